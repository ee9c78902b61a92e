"""What code written against the published ArchIt (2026.4.1) does, done the published way on every transformers release:
its config machinery (``Dictable``, ``RecursiveSerialisable`` and its hooks, ``CombinedConfig`` built and read as it
built and read it), ``PreTrainedModel.from_pretrained`` called on a task class (LaMoTO's class-weighted token
classification, copied verbatim below), the answers LaMoTO reads (``hfEquivalentSuffix()``,
``config._attn_implementation``), published masked-LM checkpoints computing what they computed, and a body with no
heads yet. The names and signatures themselves: tests/test_published_api.py."""
import json
from dataclasses import dataclass
from typing import Any, Optional

import pytest
import torch
import transformers
from safetensors.torch import save_file
from torch.nn.modules.loss import CrossEntropyLoss

from archit.instantiation.abstracts import BaseModel, ModelWithHead
from archit.instantiation.basemodels import BertBaseModel, RobertaBaseModel
from archit.instantiation.configs import (
    CombinedConfig,
    Dictable,
    HeadConfig,
    PretrainedConfig,
    RecursiveAccessible,
    RecursivePretrainedConfig,
    RecursiveSerialisable,
)
from archit.instantiation.heads import (
    MaskedLMHeadConfig,
    SequenceClassificationHead,
    SequenceClassificationHeadConfig,
    TokenClassificationHeadConfig,
)
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import (
    ForMaskedLM,
    ForSingleLabelSequenceClassification,
    ForSingleLabelTokenClassification,
)
from archit.util import dataclass_from_dict

from tests.helpers import (
    assert_close,
    bert_config,
    build_transformers_model,
    make_inputs,
    perturb_,
    read_checkpoint_tensors,
    roberta_config,
    save_transformers_model,
)

# ---------------------------------------------------------------------------------------------------------------------
# Config machinery.


@dataclass
class Hyperparameters(RecursiveSerialisable):
    """As LaMoTO's TaskHyperparameters: a dataclass of settings whose serialisation hook rewrites some fields."""
    learning_rate: float
    base_model_class: Optional[type]
    head_config: Any

    def _fields_to_dictables(self) -> dict:
        as_dict = super()._fields_to_dictables()
        as_dict["_hp_class"] = type(self).__name__
        as_dict["base_model_class"] = self.base_model_class.__name__ if self.base_model_class else None
        return as_dict


def test_serialisation_hook_is_called_and_nests():
    hp = Hyperparameters(1e-3, RobertaBaseModel, TokenClassificationHeadConfig(num_labels=3))
    assert hp.to_dict() == {"learning_rate": 1e-3, "base_model_class": "RobertaBaseModel", "_hp_class": "Hyperparameters",
                            "head_config": {"num_labels": 3}}
    assert hp.base_model_class is RobertaBaseModel  # The hook rewrote a copy, not the object.


def test_dictable_is_the_protocol_of_to_dict():
    assert Dictable in RecursiveSerialisable.__mro__ and issubclass(HeadConfig, RecursiveSerialisable)
    assert all(issubclass(RecursivePretrainedConfig, parent)
               for parent in (PretrainedConfig, RecursiveSerialisable, RecursiveAccessible))
    assert issubclass(CombinedConfig, RecursivePretrainedConfig)
    assert CombinedConfig._fallback_fields() == ["base_model_config"]
    assert CombinedConfig._serialised_fields() == ["base_model_config", "head_config"]
    assert CombinedConfig._constructor_runtime_arguments() == ["head_config", "base_model_config_class",
                                                               "head_config_class"]


class LossConfiguredConfig(CombinedConfig):
    """A subclass adding a field through the published hooks."""

    def __init__(self, label_weights=None, **kwargs):
        super().__init__(**kwargs)
        self.label_weights = label_weights

    @classmethod
    def _serialised_fields(cls):
        return [*super()._serialised_fields(), "label_weights"]

    @classmethod
    def _constructor_runtime_arguments(cls):
        return [*super()._constructor_runtime_arguments(), "label_weights"]


def test_subclass_hooks_serialise_and_read_runtime_arguments(tmp_path):
    base = roberta_config()
    config = LossConfiguredConfig(base_model_config=base, head_config=TokenClassificationHeadConfig(num_labels=2),
                                  label_weights=[1.0, 3.0])
    stored = config.to_dict()
    assert stored["label_weights"] == [1.0, 3.0] and stored["head_config"] == {"num_labels": 2}
    assert stored["base_model_config"]["hidden_size"] == base.hidden_size
    transformers.RobertaModel(base).save_pretrained(str(tmp_path))
    read = LossConfiguredConfig.from_pretrained(str(tmp_path), head_config=TokenClassificationHeadConfig(num_labels=2),
                                                base_model_config_class=transformers.RobertaConfig,
                                                label_weights=[0.5, 0.5])
    assert read.label_weights == [0.5, 0.5] and read.hidden_size == base.hidden_size


def test_combined_config_from_an_unpacked_transformers_config():
    """``CombinedConfig(**roberta_json, base_model_config_class=..., head_config=...)``, as the published one built."""
    fields = roberta_config().to_dict()
    combined = CombinedConfig(**fields, base_model_config_class=transformers.RobertaConfig,
                              head_config=TokenClassificationHeadConfig(num_labels=2))
    assert isinstance(combined.base_model_config, transformers.RobertaConfig)
    assert combined.hidden_size == fields["hidden_size"] and combined.vocab_size == fields["vocab_size"]


@pytest.fixture(scope="module")
def tagger_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()),
                                                                     TokenClassificationHeadConfig(num_labels=3))
    directory = tmp_path_factory.mktemp("tagger")
    perturb_(model).save_pretrained(str(directory))
    return directory


def test_combined_config_reads_the_head_config_a_checkpoint_stores(tagger_checkpoint, tmp_path):
    """``CombinedConfig.from_pretrained(checkpoint, head_config=None, base_model_config_class=...)`` (LaMoTO's
    training.py) reads the stored head config as its task's config class: this archit's checkpoints name the task, the
    published ArchIt's name it in ``architectures``."""
    config = CombinedConfig.from_pretrained(str(tagger_checkpoint), head_config=None,
                                            base_model_config_class=transformers.RobertaConfig)
    assert config.head_config == TokenClassificationHeadConfig(num_labels=3)
    stored = json.loads((tagger_checkpoint / "config.json").read_text())
    published = {"base_model_config": stored["base_model_config"], "head_config": {"num_labels": 3},
                 "architectures": ["ForSingleLabelTokenClassification"], "transformers_version": "4.49.0"}
    (tmp_path / "config.json").write_text(json.dumps(published))
    config = CombinedConfig.from_pretrained(str(tmp_path), base_model_config_class=transformers.RobertaConfig)
    assert config.head_config == TokenClassificationHeadConfig(num_labels=3)
    # A transformers checkpoint holds no head config: without one given, its config is the base config alone (tools
    # read the config of the checkpoint a model came from: peft, saving an adapter, reads its vocab_size).
    save_transformers_model(transformers.RobertaModel, roberta_config(), tmp_path / "bare")
    config = CombinedConfig.from_pretrained(str(tmp_path / "bare"), base_model_config_class=transformers.RobertaConfig)
    assert config.head_config is None and config.vocab_size == roberta_config().vocab_size
    with pytest.raises(ValueError, match="head_config"):  # A config to build a model with has a head config.
        CombinedConfig(base_model_config=roberta_config())


def test_combined_config_takes_what_transformers_passes(tagger_checkpoint):
    """The keyword arguments ``PreTrainedModel.from_pretrained`` passes a config class, whatever the release: hub
    arguments, internal ones, and the rest returned unused."""
    config, unused = CombinedConfig.from_pretrained(
        str(tagger_checkpoint), head_config_class=TokenClassificationHeadConfig, return_unused_kwargs=True,
        cache_dir=None, force_download=False, proxies=None, local_files_only=True, token=None, revision="main",
        subfolder="", _from_auto=False, _from_pipeline=None, _commit_hash=None, gguf_file=None, resume_download=None,
        output_attentions=True, some_model_argument=7)
    assert unused == {"some_model_argument": 7}
    assert config.output_attentions is True and config.base_model_config.output_attentions is True
    with pytest.raises(TypeError, match="some_model_argument"):
        CombinedConfig.from_pretrained(str(tagger_checkpoint), head_config_class=TokenClassificationHeadConfig,
                                       some_model_argument=7)


# ---------------------------------------------------------------------------------------------------------------------
# LaMoTO's class-weighted token classification (lamoto 2026.10.0, lamoto/tasks/mbr.py), verbatim but for the imports.

class ForSingleLabelTokenClassificationFactory:
    """
    Pretends to be a class, while it is actually secretly an instance.
        - Its instance methods mimic class methods.
        - Its __call__ is another class's __init__.
    """

    def __init__(self, class_weights: list[float]):
        self.class_weights = class_weights

    def buildLoss(self):
        return CrossEntropyLoss(weight=torch.tensor(self.class_weights, dtype=torch.float32))

    def fromModelAndHeadConfig(self, base_model, head_config):
        return ForSingleLabelTokenClassification(
            CombinedConfig(base_model_config=base_model.config, head_config=head_config),
            base_model,
            self.buildHead(base_model.__class__.standardiseConfig(base_model.config), head_config),
            self.buildLoss()
        )

    def from_pretrained(self, checkpoint: str, base_model_class: type[BaseModel], head_config=None):
        base_model_config, _ = PretrainedConfig.get_config_dict(checkpoint)
        if "base_model_config" in base_model_config:
            head_config       = head_config or dataclass_from_dict(self.headClass().configClass(), base_model_config["head_config"])  # noqa: E501
            base_model_config = base_model_config["base_model_config"]

        base_model_config = base_model_class.configClass().from_dict(base_model_config)
        return super(ModelWithHead, ForSingleLabelTokenClassification).from_pretrained(
            checkpoint,
            base_model_class(base_model_config),
            self.buildHead(base_model_class.standardiseConfig(base_model_config), head_config),
            self.buildLoss(),

            head_config=head_config,
            base_model_config_class=base_model_class.configClass(),
            head_config_class=self.headClass().configClass()
        )

    def __call__(self, combined_config, model, head, loss):
        return ForSingleLabelTokenClassification(combined_config, model, head, loss)

    @property
    def __name__(self):
        return ForSingleLabelTokenClassification.__name__

    def headClass(self):
        return ForSingleLabelTokenClassification.headClass()

    config_class = ForSingleLabelTokenClassification.config_class

    def buildHead(self, base_model_config, head_config):
        return ForSingleLabelTokenClassification.buildHead(base_model_config, head_config)


@pytest.mark.parametrize("source", ["bare", "archit"])
def test_lamoto_class_weighted_tagger_loads_through_pretrained_model(source, tagger_checkpoint, tmp_path):
    if source == "bare":
        checkpoint = tmp_path / "bare"
        reference = save_transformers_model(transformers.RobertaModel, roberta_config(), checkpoint)
        stored = {f"model._core.{k}": v for k, v in reference.state_dict().items()}
    else:
        checkpoint = tagger_checkpoint
        stored = read_checkpoint_tensors(checkpoint)
    factory = ForSingleLabelTokenClassificationFactory([1.0, 5.0, 0.5])
    model = factory.from_pretrained(str(checkpoint), RobertaBaseModel, TokenClassificationHeadConfig(num_labels=3))
    assert type(model) is ForSingleLabelTokenClassification
    state = model.state_dict()
    for key, tensor in stored.items():
        if key in state:
            assert torch.equal(state[key], tensor), key
    if source == "archit":
        assert torch.equal(model.head.dense.weight, stored["head.dense.weight"])
    # The class weights are the loss's: the loss is the weighted cross-entropy of the logits, computed here by hand.
    input_ids, attention_mask = make_inputs()
    labels = torch.tensor([[0, 1, 2, 1, 0, 2, 1], [2, 2, 1, 0, 1, -100, -100]])
    model.eval()
    with torch.no_grad():
        output = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    logits, flat = output.logits.reshape(-1, 3), labels.reshape(-1)
    keep = flat != -100
    log_p = torch.log_softmax(logits[keep], dim=-1).gather(1, flat[keep, None]).squeeze(1)
    weights = torch.tensor([1.0, 5.0, 0.5])[flat[keep]]
    assert_close(output.loss, -(weights * log_p).sum() / weights.sum())


# ---------------------------------------------------------------------------------------------------------------------
# Answers LaMoTO reads.

def lamoto_is_hf_checkpoint_for_task(archit_class, architecture_name: str) -> bool:
    """LaMoTO's Task._isHfCheckpointForThisTask (lamoto/tasks/_core.py), verbatim but for ``self``."""
    return archit_class.headClass().hfEquivalentSuffix() and \
        archit_class.headClass().hfEquivalentSuffix() in architecture_name and \
        archit_class.headClass().hfEquivalentSuffix() != architecture_name


def test_sequence_classification_names_its_transformers_task():
    assert SequenceClassificationHead.hfEquivalentSuffix() == "ForSequenceClassification"
    assert lamoto_is_hf_checkpoint_for_task(ForSingleLabelSequenceClassification, "RobertaForSequenceClassification")
    assert not lamoto_is_hf_checkpoint_for_task(ForSingleLabelSequenceClassification, "RobertaForTokenClassification")
    # For a given head config, whether the head computes what transformers' does (the mean-pooling one does not).
    assert SequenceClassificationHead.hfEquivalentSuffix(SequenceClassificationHeadConfig(num_labels=2)) == "/"


@pytest.mark.parametrize("attention", [None, "eager"])
def test_config_reports_the_attention_the_body_runs(attention, tagger_checkpoint):
    kwargs = {} if attention is None else {"attn_implementation": attention}
    model = ForSingleLabelTokenClassification.from_pretrained(str(tagger_checkpoint), RobertaBaseModel, **kwargs)
    body = model.base_model.config._attn_implementation  # What the body's attention layers read.
    assert body is not None and model.config._attn_implementation == body
    if attention is not None:
        assert body == attention


# ---------------------------------------------------------------------------------------------------------------------
# Masked LM checkpoints of the published ArchIt; a body without heads.

def test_published_mlm_checkpoint_keeps_its_function_new_ones_record_theirs(tmp_path):
    """The published MLM head used LayerNorm(eps=1e-5) and the exact GELU whatever the base config said; a checkpoint
    whose head config records neither (``{}``) computes that, here on a BERT config (eps 1e-12), checked against the
    same function computed by hand on transformers' BertModel. A new save records what its head uses."""
    config = bert_config(layer_norm_eps=1e-12, hidden_act="gelu_new")
    reference = build_transformers_model(transformers.BertModel, config)
    generator = torch.Generator().manual_seed(1)
    hidden, vocab = config.hidden_size, config.vocab_size
    head = {"head.dense1.weight": torch.randn(hidden, hidden, generator=generator) * 0.1,
            "head.dense1.bias": torch.randn(hidden, generator=generator) * 0.1,
            "head.layer_norm.weight": 1 + torch.randn(hidden, generator=generator) * 0.1,
            "head.layer_norm.bias": torch.randn(hidden, generator=generator) * 0.1,
            "head.dense2.weight": torch.randn(vocab, hidden, generator=generator) * 0.1,
            "head.dense2.bias": torch.randn(vocab, generator=generator) * 0.1}
    weights = {f"model._core.{k}": v.clone() for k, v in reference.state_dict().items() if not k.startswith("pooler.")}
    save_file({**weights, **head}, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps({"base_model_config": config.to_dict(), "head_config": {},
                                                      "transformers_version": "4.49.0"}))
    model = ForMaskedLM.from_pretrained(str(tmp_path), BertBaseModel, attn_implementation="eager").eval()
    assert model.config.head_config.layer_norm_eps == 1e-5 and model.config.head_config.hidden_act == "gelu"
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        states = reference(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        x = torch.nn.functional.gelu(states @ head["head.dense1.weight"].T + head["head.dense1.bias"])
        x = torch.nn.functional.layer_norm(x, (hidden,), head["head.layer_norm.weight"], head["head.layer_norm.bias"],
                                           eps=1e-5)
        expected = x @ head["head.dense2.weight"].T + head["head.dense2.bias"]
        assert_close(model(input_ids=input_ids, attention_mask=attention_mask).logits, expected)

    fresh = ForMaskedLM.fromModelAndHeadConfig(BertBaseModel(config), head_config := MaskedLMHeadConfig())
    assert head_config.layer_norm_eps is None  # The caller's config is not changed; the model's records.
    fresh.save_pretrained(str(tmp_path / "new"))
    stored = json.loads((tmp_path / "new" / "config.json").read_text())["head_config"]
    assert stored["layer_norm_eps"] == 1e-12 and stored["hidden_act"] == "gelu_new"
    assert fresh.head.layer_norm.eps == 1e-12


def test_body_without_heads_then_load_a_head(tmp_path, tagger_checkpoint):
    save_transformers_model(transformers.RobertaModel, roberta_config(), tmp_path / "bare")
    body = ModelWithHeads.from_pretrained(str(tmp_path / "bare"), RobertaBaseModel, {})
    assert len(body.heads) == 0
    tagger = ModelWithHeads.from_pretrained(str(tagger_checkpoint), RobertaBaseModel)
    (name,) = tagger.heads
    tagger.saveHead(name, str(tmp_path / "head"))
    assert body.loadHead(str(tmp_path / "head")) == name
    assert torch.equal(body.heads[name].dense.weight, tagger.heads[name].dense.weight)
