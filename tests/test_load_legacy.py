"""Older and odder checkpoint layouts: ``.bin`` only, pickles that try to run code, sharded safetensors, the
``LayerNorm.gamma/beta`` names, and a saved ``embeddings.position_ids`` buffer."""
import os
import shlex

import pytest
import torch
import transformers
from safetensors.torch import save_file

from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification

from tests.helpers import (
    ARCHS,
    assert_close,
    assert_same_last_hidden_state,
    build_transformers_model,
    load_archit,
    loading_info_keys,
    make_inputs,
    read_checkpoint_tensors,
    roberta_config,
    save_transformers_model,
    transformers_reference,
)

ROBERTA = ARCHS["roberta"]


def load_token_classifier(directory, num_labels=3, **kwargs):
    return load_archit(ForSingleLabelTokenClassification, directory, ROBERTA,
                       head_config=TokenClassificationHeadConfig(num_labels=num_labels), **kwargs)


def logits_pair(model, reference):
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        return (model(input_ids=input_ids, attention_mask=attention_mask).logits,
                reference(input_ids=input_ids, attention_mask=attention_mask).logits)


def write_bin_checkpoint(directory, config, state_dict, architecture: str):
    """A ``pytorch_model.bin``-only folder, as ``save_pretrained(safe_serialization=False)`` wrote it before 5.0
    (that argument is gone in 5.x, so the folder is written by hand on every version)."""
    config.architectures = [architecture]
    config.save_pretrained(str(directory))
    torch.save(state_dict, str(directory / "pytorch_model.bin"))


def test_bin_only_checkpoint(tmp_path):
    reference = build_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=3))
    write_bin_checkpoint(tmp_path, reference.config, reference.state_dict(), "RobertaForTokenClassification")
    assert not list(tmp_path.glob("*.safetensors"))
    model = load_token_classifier(tmp_path)
    assert torch.equal(model.head.dense.weight, reference.classifier.weight)
    assert_close(*logits_pair(model, reference))


class CodeOnUnpickle:
    """Unpickling this runs a shell command: a stand-in for a malicious checkpoint."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_malicious_bin_does_not_execute(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    marker = tmp_path / "pwned"
    state_dict = build_transformers_model(transformers.RobertaModel, roberta_config()).state_dict()
    state_dict["embeddings.word_embeddings.weight"] = CodeOnUnpickle(f"touch {shlex.quote(str(marker))}")
    write_bin_checkpoint(checkpoint, roberta_config(), state_dict, "RobertaModel")

    with pytest.raises(Exception):
        load_token_classifier(checkpoint)
    assert not marker.exists(), "loading a .bin checkpoint executed code from its pickle"

    # The payload is real: an unrestricted unpickler does run it.
    torch.load(str(checkpoint / "pytorch_model.bin"), weights_only=False)
    assert marker.exists()


def test_sharded_safetensors(tmp_path):
    reference = save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=3),
                                        tmp_path, max_shard_size="50KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    model = load_token_classifier(tmp_path)
    assert_close(*logits_pair(model, reference))


def test_layer_norm_gamma_beta_names(roberta_bare, tmp_path):
    tensors = read_checkpoint_tensors(roberta_bare)
    renamed = {}
    for key, tensor in tensors.items():
        if ".LayerNorm." in key:
            key = key.replace(".LayerNorm.weight", ".LayerNorm.gamma").replace(".LayerNorm.bias", ".LayerNorm.beta")
        renamed[key] = tensor
    assert any(k.endswith(".gamma") for k in renamed) and any(k.endswith(".beta") for k in renamed)
    write_bin_checkpoint(tmp_path, roberta_config(), renamed, "RobertaModel")

    model = load_token_classifier(tmp_path)
    layer_norms = {k: v for k, v in model.base_model.state_dict().items() if ".LayerNorm." in k}
    assert len(layer_norms) == 2 * (1 + 2 * ROBERTA.make_config().num_hidden_layers)
    for key, tensor in layer_norms.items():
        assert torch.equal(tensor, tensors[key]), key


def test_position_ids_buffer_in_checkpoint(roberta_bare, tmp_path):
    tensors = read_checkpoint_tensors(roberta_bare)
    tensors["embeddings.position_ids"] = torch.arange(ROBERTA.make_config().max_position_embeddings).unsqueeze(0)
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    roberta_config().save_pretrained(str(tmp_path))

    model, info = load_token_classifier(tmp_path, output_loading_info=True)
    assert not any("position_ids" in k for k in loading_info_keys(info["unexpected_keys"]))
    assert not any("position_ids" in k for k in loading_info_keys(info["missing_keys"]))
    reference = transformers_reference(transformers.RobertaModel, roberta_bare)
    assert_same_last_hidden_state(model.model, reference)
