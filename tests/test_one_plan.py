"""One load plan: for every kind of checkpoint archit reads, what ``plan_loading`` (and kin) plans from headers alone is
what ``from_pretrained`` then does, key for key: the tensors newly initialised, the stored tensors left unused, those
of another shape, those converted (and from which stored keys), and every other tensor of the model filled from the
checkpoint. The kinds: bare base models (safetensors, .bin, sharded, prefixed, legacy names, old buffers, a variant),
transformers task checkpoints (head imported, head not imported, tied MLM, GPT-2 LM), archit checkpoints (ours,
sharded, .bin, the published ArchIt's, an untied published LM), a head of another size (ignore_mismatched_sizes),
key_mapping, checkpoints transformers 5 converts (MoE experts, GPT-NeoX), a base model whose code ships with the
checkpoint, several heads, a base model alone."""
import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from archit.instantiation.basemodels import AutoBaseModel, BertBaseModel, GPT2BaseModel, RobertaBaseModel
from archit.instantiation.heads import (
    MaskedLMHeadConfig,
    SequenceClassificationHeadConfig,
    TokenClassificationHeadConfig,
)
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import (
    ForCausalLM,
    ForMaskedLM,
    ForSingleLabelSequenceClassification,
    ForSingleLabelTokenClassification,
)
from archit.loading import plan_base_loading, plan_heads_loading, plan_loading

from tests.helpers import bert_config, gpt2_config, perturb_, roberta_config, save_transformers_model
from tests.test_remote_code import write_code_checkpoint

DATA = Path(__file__).parent / "data" / "converted" / "tf4.57"
TAGGER = TokenClassificationHeadConfig(num_labels=3)


def tagger(seed: int = 0) -> ForSingleLabelTokenClassification:
    torch.manual_seed(seed)
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()), TAGGER)
    return perturb_(model, seed)


def write_bare(folder: Path, **save) -> Path:
    save_transformers_model(transformers.RobertaModel, roberta_config(), folder, **save)
    return folder


def write_prefixed(folder: Path) -> Path:
    """A base model whose keys carry the architecture prefix (``roberta.embeddings.*``)."""
    write_bare(folder)
    tensors = load_file(str(folder / "model.safetensors"))
    save_file({f"roberta.{k}": v for k, v in tensors.items()}, str(folder / "model.safetensors"), {"format": "pt"})
    return folder


def write_renamed(folder: Path) -> Path:
    """A base model whose attention keys were renamed (``attention.self.`` → ``attention_block.``), for key_mapping."""
    write_bare(folder)
    tensors = load_file(str(folder / "model.safetensors"))
    save_file({k.replace("attention.self.", "attention_block."): v for k, v in tensors.items()},
              str(folder / "model.safetensors"), {"format": "pt"})
    return folder


def write_legacy(folder: Path) -> Path:
    """BERT with ``LayerNorm.gamma/beta`` names and a saved ``embeddings.position_ids`` buffer."""
    model = save_transformers_model(transformers.BertModel, bert_config(), folder)
    tensors = {k.replace(".LayerNorm.weight", ".LayerNorm.gamma").replace(".LayerNorm.bias", ".LayerNorm.beta"): v
               for k, v in model.state_dict().items()}
    tensors["embeddings.position_ids"] = torch.arange(bert_config().max_position_embeddings)[None]
    (folder / "model.safetensors").unlink()
    torch.save(tensors, str(folder / "pytorch_model.bin"))
    return folder


def write_archit(folder: Path, **save) -> Path:
    tagger().save_pretrained(str(folder), **save)
    return folder


def write_published(folder: Path) -> Path:
    """The published ArchIt's format: no task, no archit version, a head config without newer fields."""
    write_archit(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({"base_model_config": config["base_model_config"],
                                                    "head_config": {"num_labels": 3}}))
    return folder


def write_published_untied_lm(folder: Path) -> Path:
    """A published MLM checkpoint storing its own output matrix and the embeddings: only the data tells it is untied."""
    torch.manual_seed(0)
    model = ForMaskedLM.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()), MaskedLMHeadConfig(tie_weights=False))
    perturb_(model).save_pretrained(str(folder))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({"base_model_config": config["base_model_config"], "head_config": {}}))
    return folder


def write_transformers(cls: type, config) -> callable:
    def write(folder: Path) -> Path:
        save_transformers_model(cls, config, folder)
        return folder
    return write


def copy_data(name: str) -> callable:
    def write(folder: Path) -> Path:
        shutil.copytree(DATA / name, folder)
        return folder
    return write


def write_heads(folder: Path) -> Path:
    ModelWithHeads.fromTaskModels({"ner": tagger()}).save_pretrained(str(folder))
    return folder


# name: (write(folder) -> checkpoint folder, plan(checkpoint, **kw), load(checkpoint, **kw), keyword arguments)
def task_load(task, base, head_config=None):
    return (lambda ckpt, **kw: plan_loading(task, ckpt, base, head_config, **kw),
            lambda ckpt, **kw: task.from_pretrained(ckpt, base, head_config, **kw))


CASES = {
    "bare": (write_bare, *task_load(ForSingleLabelTokenClassification, RobertaBaseModel, TAGGER), {}),
    "bare-bin": (lambda f: write_bare(f, safe_serialization=False),
                 *task_load(ForSingleLabelTokenClassification, RobertaBaseModel, TAGGER), {}),
    "bare-sharded": (lambda f: write_bare(f, max_shard_size="20KB"),
                     *task_load(ForSingleLabelTokenClassification, RobertaBaseModel, TAGGER), {}),
    "bare-variant": (lambda f: write_bare(f, variant="fp16"),
                     *task_load(ForSingleLabelTokenClassification, RobertaBaseModel, TAGGER), {"variant": "fp16"}),
    "prefixed": (write_prefixed, *task_load(ForSingleLabelTokenClassification, RobertaBaseModel, TAGGER), {}),
    "legacy-names-and-buffers": (write_legacy, *task_load(ForSingleLabelTokenClassification, BertBaseModel, TAGGER),
                                 {}),
    "transformers-tagger": (write_transformers(transformers.RobertaForTokenClassification, roberta_config(num_labels=3)),
                            *task_load(ForSingleLabelTokenClassification, RobertaBaseModel), {}),
    "transformers-mlm-tied": (write_transformers(transformers.RobertaForMaskedLM, roberta_config()),
                              *task_load(ForMaskedLM, RobertaBaseModel), {}),
    "transformers-mlm-into-untied": (write_transformers(transformers.RobertaForMaskedLM, roberta_config()),
                                     *task_load(ForMaskedLM, RobertaBaseModel, MaskedLMHeadConfig(tie_weights=False)),
                                     {}),
    "transformers-mlm-as-tagger": (write_transformers(transformers.RobertaForMaskedLM, roberta_config()),
                                   *task_load(ForSingleLabelTokenClassification, RobertaBaseModel, TAGGER), {}),
    "transformers-gpt2-lm": (write_transformers(transformers.GPT2LMHeadModel, gpt2_config()),
                             *task_load(ForCausalLM, GPT2BaseModel), {}),
    "transformers-sequence": (write_transformers(transformers.RobertaForSequenceClassification,
                                                 roberta_config(num_labels=2)),
                              *task_load(ForSingleLabelSequenceClassification, RobertaBaseModel,
                                         SequenceClassificationHeadConfig(num_labels=2, pooling="first")), {}),
    "archit": (write_archit, *task_load(ForSingleLabelTokenClassification, RobertaBaseModel), {}),
    "archit-sharded": (lambda f: write_archit(f, max_shard_size="20KB"),
                       *task_load(ForSingleLabelTokenClassification, RobertaBaseModel), {}),
    "archit-bin": (lambda f: write_archit(f, safe_serialization=False),
                   *task_load(ForSingleLabelTokenClassification, RobertaBaseModel), {}),
    "published": (write_published, *task_load(ForSingleLabelTokenClassification, RobertaBaseModel), {}),
    "published-untied-lm": (write_published_untied_lm, *task_load(ForMaskedLM, RobertaBaseModel), {}),
    "head-of-another-size": (write_archit, *task_load(ForSingleLabelTokenClassification, RobertaBaseModel,
                                                      TokenClassificationHeadConfig(num_labels=5)),
                             {"ignore_mismatched_sizes": True}),
    "key-mapping": (write_renamed, *task_load(ForSingleLabelTokenClassification, RobertaBaseModel, TAGGER),
                    {"key_mapping": {r"attention_block\.": "attention.self."}}),
    "moe-per-expert": (copy_data("archit/mixtral_token_classification"),
                       *task_load(ForSingleLabelTokenClassification, AutoBaseModel), {}),
    "gpt-neox": (copy_data("archit/gpt_neox_causal_lm"), *task_load(ForCausalLM, AutoBaseModel), {}),
    "checkpoint-code": (lambda f: write_code_checkpoint(f.parent, "oneplan", folder=f),
                        *task_load(ForSingleLabelTokenClassification, AutoBaseModel, TAGGER),
                        {"trust_remote_code": True}),
    "several-heads": (write_heads,
                      lambda ckpt, **kw: plan_heads_loading(ModelWithHeads, ckpt, RobertaBaseModel, **kw),
                      lambda ckpt, **kw: ModelWithHeads.from_pretrained(ckpt, RobertaBaseModel, **kw), {}),
    "base-model-alone": (write_archit, lambda ckpt, **kw: plan_base_loading(RobertaBaseModel, ckpt, **kw),
                         lambda ckpt, **kw: RobertaBaseModel.from_pretrained(ckpt, **kw), {}),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_plan_is_what_from_pretrained_does(kind, tmp_path):
    write, plan_of, load, kwargs = CASES[kind]
    checkpoint = str(write(tmp_path / "ckpt"))
    plan = plan_of(checkpoint, **kwargs)
    model, info = load(checkpoint, output_loading_info=True, **kwargs)
    assert plan.error is None
    assert sorted(plan.missing) == sorted(info["missing_keys"])
    assert sorted(plan.unexpected) == sorted(info["unexpected_keys"])
    assert sorted(plan.mismatched) == sorted(info["mismatched_keys"])
    assert {k: list(v) for k, v in plan.converted.items()} == info["converted_keys"]
    # Every tensor of the model (once: a tied output matrix is the embeddings') is planned as loaded or as new.
    seen, tensors = set(), set()
    for name, tensor in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        if id(tensor) not in seen and name in model.state_dict():
            tensors.add(name)
        seen.add(id(tensor))
    filled = set(plan.loaded) | {plan.embeddings_copied_to} - {None}
    assert (filled | set(plan.missing)) & tensors == tensors
    if plan.tied is not None:
        assert plan.tied == model.tiesWeights()
    if kind == "published-untied-lm":
        assert plan.tied is None and not model.tiesWeights()  # Only the data tells: planning says so.
