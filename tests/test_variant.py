"""``save_pretrained(variant=...)`` and ``from_pretrained(variant=...)``: weight files named as transformers names them
(``model.fp16.safetensors``, ``model.fp16-00001-of-00002.safetensors`` with ``model.safetensors.index.fp16.json``,
``pytorch_model.fp16.bin``, ...), side by side with those of other variants; transformers' own variant checkpoints load
too, and a folder without the files asked for says which it holds."""
import copy
import os
import re

import pytest
import torch
from safetensors.torch import load_file

from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification

from tests.helpers import (
    ARCHS,
    assert_same_last_hidden_state,
    assert_same_outputs,
    load_archit,
    make_inputs,
    read_checkpoint_tensors,
    read_json,
    save_transformers_model,
    transformers_reference,
)

ROBERTA = ARCHS["roberta"]
SHARD = "20KB"  # Splits the tiny models (float16 too) in a few shards.

# layout -> save_pretrained arguments, the single file or (the index, the shards' name pattern) of variant "fp16".
LAYOUTS = {
    "safetensors": ({}, "model.fp16.safetensors"),
    "sharded-safetensors": ({"max_shard_size": SHARD},
                            ("model.safetensors.index.fp16.json", "model.fp16-{i:05d}-of-{n:05d}.safetensors")),
    "bin": ({"safe_serialization": False}, "pytorch_model.fp16.bin"),
    "sharded-bin": ({"safe_serialization": False, "max_shard_size": SHARD},
                    ("pytorch_model.bin.index.fp16.json", "pytorch_model.fp16-{i:05d}-of-{n:05d}.bin")),
}


def token_classifier(roberta_bare):
    return load_archit(ForSingleLabelTokenClassification, roberta_bare, ROBERTA,
                       head_config=TokenClassificationHeadConfig(num_labels=3))


def logits_of(model):
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def weight_files(directory) -> set:
    return set(os.listdir(directory)) - {"config.json"}


def read_files(directory, names) -> dict:
    """The tensors of the named weight files only (the folder holds other variants too)."""
    tensors = {}
    for name in names:
        path = str(directory / name)
        if name.endswith(".safetensors"):
            tensors.update(load_file(path))
        elif name.endswith(".bin"):
            tensors.update(torch.load(path, map_location="cpu", weights_only=True))
    return tensors


def expected_variant_files(layout, directory) -> set:
    """The variant's file names that ``layout`` should have written: one file, or the index and every shard it lists,
    numbered 1..n of n."""
    _, expected = LAYOUTS[layout]
    if isinstance(expected, str):
        return {expected}
    index_name, shard_pattern = expected
    shards = set(read_json(directory / index_name)["weight_map"].values())
    assert len(shards) > 1
    assert shards == {shard_pattern.format(i=i, n=len(shards)) for i in range(1, len(shards) + 1)}
    return {index_name, *shards}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_variant_saves_beside_the_plain_weights_and_reloads(layout, roberta_bare, tmp_path):
    model = token_classifier(roberta_bare)
    model.save_pretrained(tmp_path)
    half = copy.deepcopy(model).half()
    kwargs, _ = LAYOUTS[layout]
    half.save_pretrained(tmp_path, variant="fp16", **kwargs)

    variant_files = expected_variant_files(layout, tmp_path)
    assert weight_files(tmp_path) == {"model.safetensors"} | variant_files
    stored = read_files(tmp_path, variant_files)
    assert stored.keys() == half.state_dict().keys()
    for key, tensor in half.state_dict().items():
        assert torch.equal(stored[key], tensor), key

    reloaded = load_archit(ForSingleLabelTokenClassification, tmp_path, ROBERTA, variant="fp16", dtype=torch.float16)
    for key, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, stored[key]), key
    assert_same_outputs(logits_of(reloaded), logits_of(half))

    plain = load_archit(ForSingleLabelTokenClassification, tmp_path, ROBERTA)  # Without variant: the plain weights.
    assert {p.dtype for p in plain.parameters()} == {torch.float32}
    for key, tensor in plain.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[key]), key
    assert_same_outputs(logits_of(plain), logits_of(model))


def test_a_folder_of_variant_files_only_names_them(roberta_bare, tmp_path):
    token_classifier(roberta_bare).save_pretrained(tmp_path, variant="fp16", max_shard_size=SHARD)
    with pytest.raises(OSError, match=r"model\.safetensors\.index\.fp16\.json.*variant='fp16'"):
        load_archit(ForSingleLabelTokenClassification, tmp_path, ROBERTA)
    with pytest.raises(OSError, match=r"model\.safetensors\.index\.bf16\.json.*model\.fp16-00001-of-\d{5}\.safetensors"):
        load_archit(ForSingleLabelTokenClassification, tmp_path, ROBERTA, variant="bf16")
    with pytest.raises(ValueError, match="variant"):
        token_classifier(roberta_bare).save_pretrained(tmp_path, variant="../fp16")


def test_saving_replaces_the_files_of_the_same_variant_only(roberta_bare, tmp_path):
    model = token_classifier(roberta_bare)
    model.save_pretrained(tmp_path, variant="fp16", max_shard_size=SHARD)
    fp16_shards = weight_files(tmp_path)
    model.save_pretrained(tmp_path, variant="bf16", safe_serialization=False)
    model.save_pretrained(tmp_path)
    assert weight_files(tmp_path) == fp16_shards | {"pytorch_model.bf16.bin", "model.safetensors"}

    model.save_pretrained(tmp_path, variant="fp16")  # Its shards and index go; the other variants stay.
    assert weight_files(tmp_path) == {"model.fp16.safetensors", "pytorch_model.bf16.bin", "model.safetensors"}

    model.save_pretrained(tmp_path, max_shard_size=SHARD)  # The plain file goes; the variants stay.
    plain = weight_files(tmp_path) - {"model.fp16.safetensors", "pytorch_model.bf16.bin"}
    assert "model.safetensors.index.json" in plain and len(plain) > 2
    assert all(re.fullmatch(r"model-\d{5}-of-\d{5}\.safetensors", name) for name in plain - {"model.safetensors.index.json"})


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
def test_transformers_variant_checkpoint(sharded, tmp_path):
    """A bare base model saved by transformers with a variant: transformers reads it back with ``variant=``, and so
    do archit's base model and task model."""
    save_transformers_model(ROBERTA.core, ROBERTA.make_config(), tmp_path, variant="fp16",
                            **({"max_shard_size": SHARD} if sharded else {}))
    # transformers names the files as archit does.
    assert weight_files(tmp_path) == expected_variant_files("sharded-safetensors" if sharded else "safetensors", tmp_path)
    reference = transformers_reference(ROBERTA.core, tmp_path, variant="fp16")
    stored = read_checkpoint_tensors(tmp_path)
    for key, tensor in reference.state_dict().items():
        assert torch.equal(tensor, stored[key]), key

    base = RobertaBaseModel.from_pretrained(str(tmp_path), variant="fp16", attn_implementation="eager").eval()
    task = load_archit(ForSingleLabelTokenClassification, tmp_path, ROBERTA, variant="fp16",
                       head_config=TokenClassificationHeadConfig(num_labels=3))
    for model in (base, task):
        for key, tensor in model.base_model.state_dict().items():
            assert torch.equal(tensor, stored[key]), key
    assert_same_last_hidden_state(base, reference)
    with pytest.raises(OSError, match="variant='fp16'"):
        RobertaBaseModel.from_pretrained(str(tmp_path))
