"""LM heads share the input embedding matrix when ``tie_weights=True`` -- after loading a bare checkpoint, after
``fromModelAndHeadConfig`` and after save -> reload -- and keep their own matrix when ``tie_weights=False``."""
import pytest
import torch

from archit.instantiation.heads import CausalLMHeadConfig, MaskedLMHeadConfig
from archit.instantiation.tasks import ForCausalLM, ForMaskedLM

from tests.helpers import ARCHS, load_archit, read_checkpoint_tensors


def lm_setup(kind):
    """(task class, head config class, arch, name of the head's output Linear)"""
    if kind == "mlm":
        return ForMaskedLM, MaskedLMHeadConfig, ARCHS["roberta"], "dense2"
    return ForCausalLM, CausalLMHeadConfig, ARCHS["gpt2"], "dense"


LM_KINDS = pytest.mark.parametrize("kind", ["mlm", "clm"])


def output_weight(model, linear_name):
    return getattr(model.head, linear_name).weight


def input_weight(model):
    return model.base_model.get_input_embeddings().weight


@LM_KINDS
def test_tied_after_loading_bare_checkpoint(kind, bare_checkpoints):
    task, head_config_cls, arch, linear = lm_setup(kind)
    model = load_archit(task, bare_checkpoints[arch.name], arch, head_config=head_config_cls(tie_weights=True))
    assert output_weight(model, linear) is input_weight(model)
    embedding_key = "embeddings.word_embeddings.weight" if arch.name == "roberta" else "wte.weight"
    checkpoint_embedding = read_checkpoint_tensors(bare_checkpoints[arch.name])[embedding_key]
    assert torch.equal(output_weight(model, linear), checkpoint_embedding)


@LM_KINDS
def test_tied_after_from_model_and_head_config(kind):
    task, head_config_cls, arch, linear = lm_setup(kind)
    model = task.fromModelAndHeadConfig(arch.base_class(arch.make_config()), head_config_cls(tie_weights=True))
    assert output_weight(model, linear) is input_weight(model)


@LM_KINDS
def test_tied_after_save_and_reload(kind, bare_checkpoints, tmp_path):
    task, head_config_cls, arch, linear = lm_setup(kind)
    model = load_archit(task, bare_checkpoints[arch.name], arch, head_config=head_config_cls(tie_weights=True))
    model.save_pretrained(str(tmp_path))
    reloaded = load_archit(task, tmp_path, arch)
    assert reloaded.config.head_config.tie_weights is True
    assert output_weight(reloaded, linear) is input_weight(reloaded)
    assert torch.equal(input_weight(reloaded), input_weight(model))


@LM_KINDS
def test_untied_keeps_its_own_matrix(kind, bare_checkpoints, tmp_path):
    task, head_config_cls, arch, linear = lm_setup(kind)
    model = load_archit(task, bare_checkpoints[arch.name], arch, head_config=head_config_cls(tie_weights=False))
    assert output_weight(model, linear).data_ptr() != input_weight(model).data_ptr()
    assert not torch.equal(output_weight(model, linear), input_weight(model))  # fresh head, not a copy

    model.save_pretrained(str(tmp_path))
    reloaded = load_archit(task, tmp_path, arch)
    assert reloaded.config.head_config.tie_weights is False
    assert output_weight(reloaded, linear).data_ptr() != input_weight(reloaded).data_ptr()
    assert torch.equal(output_weight(reloaded, linear), output_weight(model, linear))
    assert torch.equal(input_weight(reloaded), input_weight(model))
