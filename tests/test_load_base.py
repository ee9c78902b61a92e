"""A base-model checkpoint (bare keys ``embeddings.*``, or with the architecture prefix ``roberta.embeddings.*``) plus
a head config: the base gets exactly the checkpoint's tensors, the head is newly initialised."""
import pytest
import torch
from safetensors.torch import save_file

from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification

from tests.helpers import (
    assert_close,
    assert_same_last_hidden_state,
    load_archit,
    make_inputs,
    read_checkpoint_tensors,
    transformers_reference,
)


def write_prefixed_checkpoint(bare_dir, prefix: str, out_dir):
    """The bare checkpoint's tensors under ``<prefix>.`` keys, with the same config.json."""
    tensors = read_checkpoint_tensors(bare_dir)
    save_file({f"{prefix}.{k}": v.contiguous() for k, v in tensors.items()}, str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    (out_dir / "config.json").write_text((bare_dir / "config.json").read_text())


@pytest.fixture(params=["bare", "prefixed"])
def base_checkpoint(request, arch, bare_checkpoint, tmp_path):
    if request.param == "bare":
        return bare_checkpoint
    write_prefixed_checkpoint(bare_checkpoint, arch.prefix, tmp_path)
    return tmp_path


def load_token_classifier(arch, directory, num_labels=3):
    return load_archit(ForSingleLabelTokenClassification, directory, arch,
                       head_config=TokenClassificationHeadConfig(num_labels=num_labels))


def test_base_tensors_equal_checkpoint(arch, base_checkpoint, bare_checkpoint):
    model = load_token_classifier(arch, base_checkpoint)
    expected = read_checkpoint_tensors(bare_checkpoint)  # un-prefixed names
    state_dict = model.base_model.state_dict()
    assert set(state_dict) <= set(expected), f"base keys absent from checkpoint: {set(state_dict) - set(expected)}"
    assert set(expected) - set(state_dict) <= {k for k in expected if k.startswith("pooler.")}
    for key, tensor in state_dict.items():
        assert torch.equal(tensor, expected[key]), key


def test_base_output_equals_transformers(arch, base_checkpoint):
    model = load_token_classifier(arch, base_checkpoint)
    reference = transformers_reference(arch.core, base_checkpoint)
    assert_same_last_hidden_state(model.model, reference)


def test_head_is_newly_initialised(arch, base_checkpoint):
    model = load_token_classifier(arch, base_checkpoint, num_labels=3)
    weight, bias = model.head.dense.weight, model.head.dense.bias
    assert weight.shape == (3, model.config.base_model_config.hidden_size)
    assert weight.device.type == "cpu" and bias.device.type == "cpu"
    assert torch.isfinite(weight).all() and torch.isfinite(bias).all()
    assert weight.abs().sum() > 0
    assert not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))


def test_logits_are_the_head_on_the_base_output(arch, base_checkpoint):
    """End to end: logits = Linear(head.dense) over transformers' own hidden states."""
    model = load_token_classifier(arch, base_checkpoint)
    reference = transformers_reference(arch.core, base_checkpoint)
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        hidden = reference(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        expected = torch.nn.functional.linear(hidden, model.head.dense.weight, model.head.dense.bias)
    assert_close(logits, expected)
