"""Base models beyond RoBERTa, BERT and GPT-2: ``AutoBaseModel`` on many families, ``DebertaBaseModel``,
``CanineBaseModel`` and ``ModernBertBaseModel``, and the family name table behind ``standardiseConfig``.

References are transformers' own classes on the same checkpoint (``AutoModel.from_pretrained``, the saved task model),
and for ``standardiseConfig`` the values the test itself put into the config under each family's own names."""
import importlib
import logging
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import pytest
import torch
import transformers
from packaging.version import Version

from archit.instantiation.abstracts import BaseModelConfig
from archit.instantiation.basemodels import (
    AutoBaseModel,
    BertBaseModel,
    CanineBaseModel,
    DebertaBaseModel,
    GPT2BaseModel,
    ModernBertBaseModel,
    RobertaBaseModel,
)
from archit.instantiation.configs import CombinedConfig
from archit.instantiation.heads import CausalLMHeadConfig, MaskedLMHeadConfig, TokenClassificationHeadConfig
from archit.instantiation.tasks import ForCausalLM, ForMaskedLM, ForSingleLabelTokenClassification

from tests.helpers import (
    ATOL,
    HEADS,
    HIDDEN,
    INTERMEDIATE,
    LAYERS,
    POSITIONS,
    RTOL,
    TRANSFORMERS_VERSION,
    VOCAB,
    assert_close,
    assert_same_outputs,
    bert_config,
    build_transformers_model,
    gpt2_config,
    load_archit,
    make_inputs,
    read_checkpoint_tensors,
    roberta_config,
    save_transformers_model,
)

NUM_LABELS = 3
DROPOUT, EPS = 0.15, 1e-7  # Not any family's default, so that reading the wrong field shows.
HAS_MODERNBERT = TRANSFORMERS_VERSION >= Version("4.48.0.dev0")


@dataclass(frozen=True)
class Family:
    """A transformers family, its tiny config (eager attention) and the BaseModelConfig its own field names give."""
    name: str
    config_class: str  # transformers names, resolved late: some families are missing from old releases
    core_class: str
    make_kwargs: Callable[[], dict]
    expected: BaseModelConfig

    def available(self) -> bool:
        return hasattr(transformers, self.config_class) and hasattr(transformers, self.core_class)

    def config(self, **overrides) -> transformers.PretrainedConfig:
        kwargs = {**self.make_kwargs(), "attn_implementation": "eager", **overrides}
        return getattr(transformers, self.config_class)(**kwargs)

    @property
    def core(self) -> type:
        return getattr(transformers, self.core_class)

    @property
    def token_classification(self) -> Optional[type]:
        return getattr(transformers, self.core_class.replace("Model", "ForTokenClassification"), None)


def _bert_like(**extra) -> dict:
    return {**dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                   intermediate_size=INTERMEDIATE, max_position_embeddings=POSITIONS, hidden_dropout_prob=DROPOUT,
                   layer_norm_eps=EPS, hidden_act="relu"), **extra}


def _llama_like(**extra) -> dict:
    return dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                num_key_value_heads=2, intermediate_size=INTERMEDIATE, max_position_embeddings=POSITIONS,
                rms_norm_eps=EPS, hidden_act="gelu", bos_token_id=1, eos_token_id=2, **extra)


def _standard(dropout=DROPOUT, eps=EPS, act="relu", **overrides) -> BaseModelConfig:
    values = dict(hidden_size=HIDDEN, hidden_dropout_prob=dropout, vocab_size=VOCAB, num_hidden_layers=LAYERS,
                  num_attention_heads=HEADS, context_length=POSITIONS, layer_norm_eps=eps, hidden_act=act)
    return BaseModelConfig(**{**values, **overrides})


FAMILIES: Dict[str, Family] = {f.name: f for f in [
    Family("distilbert", "DistilBertConfig", "DistilBertModel",
           lambda: dict(vocab_size=VOCAB, dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=INTERMEDIATE,
                        max_position_embeddings=POSITIONS, dropout=DROPOUT, activation="relu", pad_token_id=0),
           _standard(eps=None)),  # DistilBERT's layer norm epsilon is fixed in code, not in the config.
    Family("electra", "ElectraConfig", "ElectraModel", lambda: _bert_like(embedding_size=16, pad_token_id=0),
           _standard()),
    Family("xlm-roberta", "XLMRobertaConfig", "XLMRobertaModel",
           lambda: _bert_like(pad_token_id=1, bos_token_id=0, eos_token_id=2), _standard()),
    Family("deberta-v2", "DebertaV2Config", "DebertaV2Model",
           lambda: _bert_like(relative_attention=True, position_biased_input=False, position_buckets=16,
                              pos_att_type=["p2c", "c2p"], pad_token_id=0), _standard()),
    Family("bert", "BertConfig", "BertModel", lambda: _bert_like(pad_token_id=0), _standard()),
    Family("gpt2", "GPT2Config", "GPT2Model",
           lambda: dict(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=INTERMEDIATE,
                        n_positions=POSITIONS, resid_pdrop=DROPOUT, layer_norm_epsilon=EPS,
                        activation_function="relu", bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1),
           _standard()),
    Family("llama", "LlamaConfig", "LlamaModel", _llama_like, _standard(dropout=0.0, act="gelu")),
    Family("mistral", "MistralConfig", "MistralModel", _llama_like, _standard(dropout=0.0, act="gelu")),
    Family("qwen2", "Qwen2Config", "Qwen2Model", _llama_like, _standard(dropout=0.0, act="gelu")),  # 4.37+
]}


@pytest.fixture(params=sorted(FAMILIES))
def family(request) -> Family:
    family = FAMILIES[request.param]
    if not family.available():
        pytest.skip(f"transformers {TRANSFORMERS_VERSION} has no {family.core_class}")
    return family


@pytest.fixture(scope="module")
def bare_checkpoint_of(tmp_path_factory) -> Callable[[Family], object]:
    """A bare base-model checkpoint per family (``XModel.save_pretrained``), written once and only read afterwards."""
    made = {}

    def make(family: Family):
        if family.name not in made:
            directory = tmp_path_factory.mktemp(f"bare-{family.name}")
            save_transformers_model(family.core, family.config(), directory)
            made[family.name] = directory
        return made[family.name]
    return make


def _labels(attention_mask: torch.Tensor) -> torch.Tensor:
    labels = torch.randint(0, NUM_LABELS, attention_mask.shape, generator=torch.Generator().manual_seed(1))
    labels[attention_mask == 0] = -100
    return labels


def _assert_same_base_outputs(ours, reference, input_ids, attention_mask):
    """Last hidden state and every hidden state of an archit base model equal those of a transformers base model, at
    every position: with the same padding mask, decoders compute the same at padded positions too."""
    with torch.no_grad():
        actual = ours(input_ids, attention_mask, do_drop_intermediates=False)
        expected = reference(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                             return_dict=True)
    assert_close(actual.last_hidden_state, expected.last_hidden_state)
    assert len(actual.hidden_states) == len(expected.hidden_states)
    for layer, (a, e) in enumerate(zip(actual.hidden_states, expected.hidden_states)):
        torch.testing.assert_close(a, e, atol=ATOL, rtol=RTOL, msg=lambda m, layer=layer: f"hidden state {layer}: {m}")
    return actual


def _assert_round_trip(model, directory, base_class):
    """save_pretrained, then from_pretrained with the head config from the checkpoint: the same logits."""
    input_ids, attention_mask = make_inputs()
    model.save_pretrained(directory)
    reloaded = load_archit(type(model), directory, base_class=base_class)
    with torch.no_grad():
        expected, actual = model.eval()(input_ids, attention_mask).logits, reloaded(input_ids, attention_mask).logits
    assert_same_outputs(actual, expected)
    return reloaded


# ---------------------------------------------------------------------------------------------------------------------
# AutoBaseModel

def test_auto_base_model_from_bare_checkpoint_equals_automodel(family, bare_checkpoint_of):
    checkpoint = bare_checkpoint_of(family)
    reference = transformers.AutoModel.from_pretrained(str(checkpoint), attn_implementation="eager").eval()
    model = AutoBaseModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
    assert type(model.base_model) is type(reference) is family.core  # The architecture came from config.json.
    assert model.base_model.config._attn_implementation == "eager"
    _assert_same_base_outputs(model, reference, *make_inputs())


def test_auto_token_classification_from_bare_checkpoint(family, bare_checkpoint_of, caplog):
    checkpoint = bare_checkpoint_of(family)
    reference = transformers.AutoModel.from_pretrained(str(checkpoint), attn_implementation="eager").eval()
    with caplog.at_level(logging.WARNING, logger="archit"):
        model = load_archit(ForSingleLabelTokenClassification, checkpoint, base_class=AutoBaseModel,
                            head_config=TokenClassificationHeadConfig(num_labels=NUM_LABELS))
    assert not [r for r in caplog.records if "builds" in r.getMessage()]  # No model_type-mismatch warning.
    assert not [r for r in caplog.records if "newly initialised" in r.getMessage() and "base model" in r.getMessage()]
    _assert_same_base_outputs(model.model, reference, *make_inputs())


def test_auto_token_classification_from_task_checkpoint(family, tmp_path):
    """A transformers XForTokenClassification checkpoint (base keys under its prefix, e.g. ``distilbert.``): base and
    head weights are imported, logits equal the transformers model's."""
    if family.token_classification is None:
        pytest.skip(f"transformers {TRANSFORMERS_VERSION} has no {family.core_class}-based token classifier")
    reference = save_transformers_model(family.token_classification, family.config(num_labels=NUM_LABELS), tmp_path)
    model = load_archit(ForSingleLabelTokenClassification, tmp_path, base_class=AutoBaseModel,
                        head_config=TokenClassificationHeadConfig(num_labels=NUM_LABELS))
    assert type(model.base_model) is family.core
    input_ids, attention_mask = make_inputs()
    _assert_same_base_outputs(model.model, reference.base_model, input_ids, attention_mask)
    with torch.no_grad():
        expected = reference(input_ids, attention_mask=attention_mask).logits
        assert_close(model(input_ids, attention_mask).logits, expected)


def test_auto_token_classification_trains_and_round_trips(family, bare_checkpoint_of, tmp_path):
    model = load_archit(ForSingleLabelTokenClassification, bare_checkpoint_of(family), base_class=AutoBaseModel,
                        head_config=TokenClassificationHeadConfig(num_labels=NUM_LABELS))
    input_ids, attention_mask = make_inputs()
    labels = _labels(attention_mask)

    def eval_loss() -> float:
        with torch.no_grad():
            return model.eval()(input_ids, attention_mask, labels=labels).loss.item()

    before = eval_loss()
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(5):
        optimiser.zero_grad()
        model(input_ids, attention_mask, labels=labels).loss.backward()
        optimiser.step()
    assert eval_loss() < before

    reloaded = _assert_round_trip(model, tmp_path, AutoBaseModel)
    assert type(reloaded.base_model) is family.core
    base_alone = AutoBaseModel.from_pretrained(tmp_path)  # The base model alone, out of the archit checkpoint.
    stored = read_checkpoint_tensors(tmp_path)
    for key, tensor in base_alone.base_model.state_dict().items():
        assert torch.equal(tensor, stored[f"model._core.{key}"]), key
    combined = CombinedConfig.from_pretrained(tmp_path, head_config_class=TokenClassificationHeadConfig)
    assert type(combined.base_model_config) is type(family.config())
    assert combined.base_model_config.model_type == family.name


@pytest.mark.parametrize("family_class", [BertBaseModel, GPT2BaseModel], ids=["bert", "gpt2"])
def test_auto_checkpoints_interchange_with_family_class(family_class, tmp_path):
    """AutoBaseModel builds the same core as the family's own class (no pooler), so their checkpoints load into
    each other with every weight and the same logits."""
    config = {BertBaseModel: bert_config, GPT2BaseModel: gpt2_config}[family_class]()
    torch.manual_seed(0)
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(
        AutoBaseModel(config), TokenClassificationHeadConfig(num_labels=NUM_LABELS)).eval()
    model.save_pretrained(tmp_path)
    other, info = load_archit(ForSingleLabelTokenClassification, tmp_path, base_class=family_class,
                              output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        assert_same_outputs(other.eval()(input_ids, attention_mask).logits, model(input_ids, attention_mask).logits)


def test_auto_base_model_config_class_reads_any_family():
    config = FAMILIES["distilbert"].config()
    assert AutoBaseModel.configClass() is AutoBaseModel.config_class
    combined = CombinedConfig(base_model_config=config.to_dict(), head_config={"num_labels": NUM_LABELS},
                              base_model_config_class=AutoBaseModel.configClass(),
                              head_config_class=TokenClassificationHeadConfig)
    assert type(combined.base_model_config) is transformers.DistilBertConfig
    assert combined.base_model_config.dim == HIDDEN


def test_auto_base_model_refuses_what_it_cannot_wrap():
    t5 = transformers.T5Config(vocab_size=VOCAB, d_model=HIDDEN, num_layers=1, num_heads=HEADS, d_ff=INTERMEDIATE)
    with pytest.raises(ValueError, match="encoder-decoder"):
        AutoBaseModel(t5)
    with pytest.raises(ValueError, match="model_type"):
        CombinedConfig(base_model_config={"hidden_size": HIDDEN},
                       head_config=TokenClassificationHeadConfig(num_labels=NUM_LABELS))
    with pytest.raises(TypeError, match="coreClassFor"):
        AutoBaseModel.coreClass()


# ---------------------------------------------------------------------------------------------------------------------
# standardiseConfig

def test_standardise_config_reads_each_familys_names(family):
    assert AutoBaseModel.standardiseConfig(family.config()) == family.expected


def test_standardise_config_of_family_classes_unchanged():
    assert RobertaBaseModel.standardiseConfig(roberta_config(hidden_dropout_prob=DROPOUT)) == BaseModelConfig(
        HIDDEN, DROPOUT, VOCAB, LAYERS, HEADS, POSITIONS, layer_norm_eps=1e-5, hidden_act="gelu")
    assert BertBaseModel.standardiseConfig(bert_config()) == BaseModelConfig(
        HIDDEN, 0.1, VOCAB, LAYERS, HEADS, POSITIONS, layer_norm_eps=1e-12, hidden_act="gelu")
    assert GPT2BaseModel.standardiseConfig(gpt2_config(resid_pdrop=DROPOUT)) == BaseModelConfig(
        HIDDEN, DROPOUT, VOCAB, LAYERS, HEADS, POSITIONS)


@pytest.mark.parametrize("biased_input, relative, max_relative, expected", [
    (True, True, 16, POSITIONS),                    # Absolute positions limit the context.
    (False, False, 16, POSITIONS),                  # No positions at all: the configured maximum.
    (False, True, 16, (2 * 16 - 1) * LAYERS),       # Receptive field of relative attention alone.
    (False, True, -1, (2 * POSITIONS - 1) * LAYERS),  # -1: max_position_embeddings, as DebertaModel reads it.
])
def test_deberta_context_length(biased_input, relative, max_relative, expected):
    config = _deberta_config(position_biased_input=biased_input, relative_attention=relative,
                             max_relative_positions=max_relative)
    assert DebertaBaseModel.standardiseConfig(config) == _standard(context_length=expected)


# ---------------------------------------------------------------------------------------------------------------------
# DeBERTa, CANINE, ModernBERT

def _deberta_config(**overrides) -> transformers.DebertaConfig:
    kwargs = _bert_like(relative_attention=True, position_biased_input=False, max_relative_positions=16,
                        pos_att_type=["p2c", "c2p"], pad_token_id=0, attn_implementation="eager")
    return transformers.DebertaConfig(**{**kwargs, **overrides})


def _canine_config(**overrides) -> transformers.CanineConfig:
    kwargs = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=INTERMEDIATE, max_position_embeddings=4 * POSITIONS, num_hash_functions=4,
                  num_hash_buckets=64, downsampling_rate=2, hidden_dropout_prob=DROPOUT, layer_norm_eps=EPS,
                  attn_implementation="eager")
    return transformers.CanineConfig(**{**kwargs, **overrides})


def _modernbert_config(**overrides) -> "transformers.ModernBertConfig":
    kwargs = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=INTERMEDIATE, max_position_embeddings=POSITIONS, global_attn_every_n_layers=2,
                  local_attention=16, classifier_dropout=DROPOUT, norm_eps=EPS, hidden_activation="relu",
                  pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
                  attn_implementation="eager")
    return transformers.ModernBertConfig(**{**kwargs, **overrides})


FAMILY_CLASSES = {
    "deberta": (DebertaBaseModel, _deberta_config, "DebertaModel"),
    "canine": (CanineBaseModel, _canine_config, "CanineModel"),
    "modernbert": (ModernBertBaseModel, _modernbert_config, "ModernBertModel"),
}
needs_modernbert = pytest.mark.skipif(not HAS_MODERNBERT, reason=f"transformers {TRANSFORMERS_VERSION} has no "
                                                                 f"ModernBERT (4.48+)")


@pytest.fixture(params=[pytest.param(name, marks=needs_modernbert if name == "modernbert" else ())
                        for name in FAMILY_CLASSES])
def family_class(request):
    return FAMILY_CLASSES[request.param]


def test_family_class_equals_transformers_core(family_class, tmp_path):
    base_class, make_config, core_name = family_class
    core_class = getattr(transformers, core_name)
    save_transformers_model(core_class, make_config(), tmp_path)
    reference = core_class.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    model = base_class.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert type(model.base_model) is core_class
    output = _assert_same_base_outputs(model, reference, *make_inputs())
    assert output.pooler_output is None  # Heads pool for themselves.


def test_family_class_head_trains_and_round_trips(family_class, tmp_path):
    base_class, make_config, _ = family_class
    torch.manual_seed(0)
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(
        base_class(make_config()), TokenClassificationHeadConfig(num_labels=NUM_LABELS))
    input_ids, attention_mask = make_inputs()
    model(input_ids, attention_mask, labels=_labels(attention_mask)).loss.backward()
    assert model.head.dense.weight.grad is not None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.base_model.parameters())  # In the core.
    _assert_round_trip(model, tmp_path, base_class)


def test_family_class_standardise_config():
    assert CanineBaseModel.standardiseConfig(_canine_config()) == _standard(
        vocab_size=None, context_length=4 * POSITIONS, act="gelu")
    if HAS_MODERNBERT:  # No overall dropout: heads use classifier_dropout.
        assert ModernBertBaseModel.standardiseConfig(_modernbert_config()) == _standard()


@needs_modernbert
def test_modernbert_runs_on_cpu_without_flash_attention():
    """Without a requested implementation, transformers picks one that runs here (flash attention needs a GPU)."""
    model = ModernBertBaseModel(_modernbert_config(attn_implementation=None)).eval()
    assert model.base_model.config._attn_implementation in ("eager", "sdpa")
    with torch.no_grad():
        assert model(*make_inputs()).last_hidden_state.shape == (*make_inputs()[0].shape, HIDDEN)


def test_canine_has_no_vocabulary_for_lm_heads():
    base = CanineBaseModel(_canine_config())
    for task, head_config in [(ForMaskedLM, MaskedLMHeadConfig()), (ForCausalLM, CausalLMHeadConfig())]:
        with pytest.raises(ValueError, match="vocab_size is None"):
            task.fromModelAndHeadConfig(base, head_config)


def test_import_works_on_every_release():
    basemodels = importlib.import_module("archit.instantiation.basemodels")
    assert all(hasattr(basemodels, name) for name in basemodels.__all__)


@pytest.mark.skipif(HAS_MODERNBERT, reason=f"transformers {TRANSFORMERS_VERSION} has ModernBERT")
def test_modernbert_without_modernbert_says_which_release(tmp_path):
    with pytest.raises(ImportError, match="4.48"):
        ModernBertBaseModel.configClass()
    with pytest.raises(ImportError, match="4.48"):
        ModernBertBaseModel(bert_config())
    build_transformers_model(transformers.BertModel, bert_config()).save_pretrained(str(tmp_path))
    with pytest.raises(ImportError, match="4.48"):
        ModernBertBaseModel.from_pretrained(tmp_path)
    with pytest.raises(ImportError, match="4.48"):
        ForSingleLabelTokenClassification.from_pretrained(tmp_path, ModernBertBaseModel,
                                                          TokenClassificationHeadConfig(num_labels=NUM_LABELS))


def test_importing_base_models_does_not_import_modernberts_modeling_file():
    """ModernBERT's modeling module compiles on import (torch._inductor on 4.5x: tens of MiB and seconds); importing
    archit's base models must not pay for it unless ModernBERT is used."""
    script = ("import sys; import archit.instantiation.basemodels; "
              "print('transformers.models.modernbert.modeling_modernbert' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
