"""archit's own checkpoints: written by ``save_pretrained`` (this version) or in the published ArchIt layout
(``pytorch_model.bin`` with ``model._core.*``/``head.*`` keys), reloaded without a head config; a head config given
by the caller wins over the checkpoint's."""
import json

import pytest
import torch
import transformers
from safetensors.torch import save_file

from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import MaskedLMHeadConfig, TokenClassificationHeadConfig
from archit.instantiation.tasks import ForCausalLM, ForMaskedLM, ForSingleLabelTokenClassification

from tests.helpers import (
    ARCHS,
    assert_close,
    assert_same_outputs,
    build_transformers_model,
    load_archit,
    make_inputs,
    read_checkpoint_tensors,
    roberta_config,
)

ROBERTA = ARCHS["roberta"]


def roberta_base_from_bare(bare_dir):
    """A RobertaBaseModel whose core got the bare checkpoint's tensors through plain ``load_state_dict``."""
    base = RobertaBaseModel(roberta_config())
    missing, unexpected = base.base_model.load_state_dict(read_checkpoint_tensors(bare_dir), strict=False)
    assert not missing and all(k.startswith("pooler.") for k in unexpected)
    return base


def logits_of(model):
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def test_from_model_and_head_config_save_reload(roberta_bare, tmp_path):
    head_config = TokenClassificationHeadConfig(num_labels=3)
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(roberta_base_from_bare(roberta_bare), head_config)
    model.eval()
    model.save_pretrained(str(tmp_path))

    reloaded = load_archit(ForSingleLabelTokenClassification, tmp_path, ROBERTA)
    assert type(reloaded.config.head_config) is TokenClassificationHeadConfig
    assert reloaded.config.head_config == head_config
    assert_same_outputs(logits_of(reloaded), logits_of(model))


def write_published_archit_checkpoint(directory, reference: transformers.RobertaForTokenClassification):
    """The layout the published ArchIt (<= 2026.4.1, transformers <= 4.49) wrote."""
    config = {"base_model_config": reference.config.to_dict(), "head_config": {"num_labels": reference.num_labels},
              "transformers_version": "4.49.0"}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    state = reference.state_dict()
    weights = {f"model._core.{k[len('roberta.'):]}": v.clone() for k, v in state.items() if k.startswith("roberta.")}
    weights["head.dense.weight"] = state["classifier.weight"].clone()
    weights["head.dense.bias"] = state["classifier.bias"].clone()
    torch.save(weights, str(directory / "pytorch_model.bin"))


def test_published_archit_checkpoint(tmp_path):
    reference = build_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=4))
    write_published_archit_checkpoint(tmp_path, reference)

    model = load_archit(ForSingleLabelTokenClassification, tmp_path, ROBERTA)
    assert model.config.head_config == TokenClassificationHeadConfig(num_labels=4)
    assert torch.equal(model.head.dense.weight, reference.classifier.weight)
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask).logits
    assert_close(logits_of(model), expected)


def test_caller_head_config_wins(roberta_bare, tmp_path):
    untied = load_archit(ForMaskedLM, roberta_bare, ROBERTA, head_config=MaskedLMHeadConfig(tie_weights=False))
    untied.save_pretrained(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["head_config"]["tie_weights"] is False

    model = load_archit(ForMaskedLM, tmp_path, ROBERTA, head_config=MaskedLMHeadConfig(tie_weights=True))
    assert model.config.head_config.tie_weights is True
    assert model.head.dense2.weight is model.base_model.get_input_embeddings().weight
    assert torch.equal(model.base_model.get_input_embeddings().weight,
                       untied.base_model.get_input_embeddings().weight)


@pytest.mark.parametrize("task", ["masked_lm", "causal_lm"])
def test_published_lm_checkpoint_with_own_output_matrix_reloads_untied(tmp_path, task):
    """A published ArchIt LM checkpoint has ``"head_config": {}`` (no ``tie_weights``) and stores its own output matrix,
    different from the input embeddings: it reloads untied, computing what transformers' untied task model computes on
    the same tensors."""
    if task == "masked_lm":
        arch, reference_cls, task_cls = ROBERTA, transformers.RobertaForMaskedLM, ForMaskedLM
        heads = {"lm_head.dense.": "head.dense1.", "lm_head.layer_norm.": "head.layer_norm.",
                 "lm_head.decoder.": "head.dense2.", "lm_head.bias": "head.dense2.bias"}
    else:
        arch, reference_cls, task_cls = ARCHS["gpt2"], transformers.GPT2LMHeadModel, ForCausalLM
        heads = {"lm_head.": "head.dense."}
    reference = build_transformers_model(reference_cls, arch.make_config(tie_word_embeddings=False))
    output_matrix = reference.get_output_embeddings().weight
    assert not torch.equal(output_matrix, reference.get_input_embeddings().weight)
    weights = {}
    for key, tensor in reference.state_dict().items():
        head = next((prefix for prefix in heads if key.startswith(prefix)), None)
        if head is not None:
            weights[heads[head] + key[len(head):]] = tensor.clone()
        elif key.startswith(arch.prefix + "."):
            weights["model._core." + key[len(arch.prefix) + 1:]] = tensor.clone()
    save_file(weights, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps(
        {"base_model_config": arch.make_config().to_dict(), "head_config": {}}))

    model = load_archit(task_cls, tmp_path, arch)
    assert model.config.head_config.tie_weights is False
    assert model.get_output_embeddings().weight is not model.base_model.get_input_embeddings().weight
    assert torch.equal(model.get_output_embeddings().weight, output_matrix)
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask).logits
    assert_close(logits_of(model), expected)


def test_published_lm_checkpoint_without_own_output_matrix_reloads_tied(tmp_path, roberta_bare):
    """The same published format storing no output matrix of its own (or the embeddings again) stays tied."""
    model = load_archit(ForMaskedLM, roberta_bare, ROBERTA, head_config=MaskedLMHeadConfig())
    model.save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config["head_config"] = {}
    (tmp_path / "config.json").write_text(json.dumps(config))
    reloaded = load_archit(ForMaskedLM, tmp_path, ROBERTA)
    assert reloaded.config.head_config.tie_weights is True
    assert reloaded.head.dense2.weight is reloaded.base_model.get_input_embeddings().weight


def test_published_lm_checkpoint_storing_the_embeddings_twice_reloads_tied(roberta_bare, tmp_path):
    """The same published format with the output matrix stored again, equal to the input embeddings, stays tied too
    (the matrices are compared, not taken as different for being two parameters of the model built empty)."""
    model = load_archit(ForMaskedLM, roberta_bare, ROBERTA, head_config=MaskedLMHeadConfig())
    tensors = {key: tensor.clone().contiguous() for key, tensor in model.state_dict().items()}
    assert torch.equal(tensors["head.dense2.weight"], tensors["model._core.embeddings.word_embeddings.weight"])
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads(json.dumps(model.config.to_dict()))
    config["head_config"] = {}
    for key in ("task", "archit_version"):
        config.pop(key)
    (tmp_path / "config.json").write_text(json.dumps(config))
    reloaded = load_archit(ForMaskedLM, tmp_path, ROBERTA)
    assert reloaded.config.head_config.tie_weights is True
    assert reloaded.head.dense2.weight is reloaded.base_model.get_input_embeddings().weight
