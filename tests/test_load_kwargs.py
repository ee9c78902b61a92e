"""Keyword arguments of ``from_pretrained`` that transformers users pass: dtype (under either name), device_map,
attn_implementation, output_loading_info, subfolder, local_files_only."""
import shutil

import pytest
import torch

from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification

from tests.helpers import ARCHS, load_archit, loading_info_keys, read_checkpoint_tensors

ROBERTA = ARCHS["roberta"]


def token_task():
    return ForSingleLabelTokenClassification


def load_token_classifier(directory, num_labels=3, **kwargs):
    return load_archit(token_task(), directory, ROBERTA,
                       head_config=TokenClassificationHeadConfig(num_labels=num_labels), **kwargs)


@pytest.mark.parametrize("kwarg,dtype", [("torch_dtype", torch.float16), ("dtype", torch.bfloat16),
                                         ("torch_dtype", torch.bfloat16), ("dtype", torch.float16)],
                         ids=["torch_dtype-fp16", "dtype-bf16", "torch_dtype-bf16", "dtype-fp16"])
def test_dtype(roberta_bare, kwarg, dtype):
    model = load_token_classifier(roberta_bare, **{kwarg: dtype})
    assert {p.dtype for p in model.parameters()} == {dtype}
    tensors = read_checkpoint_tensors(roberta_bare)
    for key, tensor in model.base_model.state_dict().items():
        if tensor.is_floating_point():
            assert torch.equal(tensor, tensors[key].to(dtype)), key


def test_dtype_archit_checkpoint(roberta_bare, tmp_path):
    """Weights that come from an archit checkpoint (head included) are cast too."""
    load_token_classifier(roberta_bare).save_pretrained(str(tmp_path))
    model = load_archit(token_task(), tmp_path, ROBERTA, torch_dtype=torch.float16)
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    tensors = read_checkpoint_tensors(tmp_path)
    assert torch.equal(model.head.dense.weight, tensors["head.dense.weight"].to(torch.float16))


def test_device_map_cpu(roberta_bare):
    model = load_token_classifier(roberta_bare, device_map="cpu")
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    tensors = read_checkpoint_tensors(roberta_bare)
    for key, tensor in model.base_model.state_dict().items():
        assert torch.equal(tensor, tensors[key]), key


def test_attn_implementation_eager(roberta_bare):
    model = load_token_classifier(roberta_bare, attn_implementation="eager")
    assert model.base_model.config._attn_implementation == "eager"


def test_output_loading_info(roberta_bare):
    model, info = load_token_classifier(roberta_bare, output_loading_info=True)
    missing = loading_info_keys(info["missing_keys"])
    unexpected = loading_info_keys(info["unexpected_keys"])
    assert {"head.dense.weight", "head.dense.bias"} <= missing
    assert not any(k.startswith("model._core.") or k.startswith("embeddings.") for k in missing), missing
    assert {"pooler.dense.weight", "pooler.dense.bias"} <= unexpected
    assert not loading_info_keys(info["mismatched_keys"])
    assert model.head.dense.weight.shape == (3, ROBERTA.make_config().hidden_size)


def test_subfolder(roberta_bare, tmp_path):
    shutil.copytree(roberta_bare, tmp_path / "sub")
    model = load_token_classifier(tmp_path, subfolder="sub")
    tensors = read_checkpoint_tensors(roberta_bare)
    for key, tensor in model.base_model.state_dict().items():
        assert torch.equal(tensor, tensors[key]), key


def test_local_files_only(roberta_bare):
    model = load_token_classifier(roberta_bare, local_files_only=True)
    tensors = read_checkpoint_tensors(roberta_bare)
    assert torch.equal(model.base_model.embeddings.word_embeddings.weight, tensors["embeddings.word_embeddings.weight"])


@pytest.mark.skipif(not getattr(ROBERTA.core, "_supports_sdpa", False),
                    reason="this RobertaModel has no SDPA attention")
def test_attn_implementation_sdpa(roberta_bare):
    model = load_token_classifier(roberta_bare, attn_implementation="sdpa")
    assert model.base_model.config._attn_implementation == "sdpa"
