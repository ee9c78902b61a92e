"""Disk offload and big-model placement, against transformers' own ``from_pretrained`` with the same ``device_map``,
``offload_folder``, ``max_memory`` and ``offload_buffers`` on the same tiny checkpoint: the same tensors on the same
devices (the head where the task model's head is), the same tensors left on disk (read in place from a safetensors
checkpoint, written into ``offload_folder`` otherwise), equal logits and tokens through accelerate's hooks, and the
same refusals. On a machine without accelerators, ``"auto"`` with a small ``max_memory["cpu"]`` puts what does not fit
on ``"disk"``, on every release."""
import importlib.metadata
import os
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch
import transformers
from packaging.version import Version

from archit.instantiation.basemodels import AutoBaseModel, RobertaBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import ForCausalLM, ForSingleLabelTokenClassification
from archit.loading import plan_loading

from tests.helpers import (
    TRANSFORMERS_VERSION,
    assert_same_outputs,
    expected_era,
    left_padded_prompts,
    make_inputs,
    roberta_config,
    save_causal_lm,
    save_transformers_model,
    transformers_dtype_kwargs,
)

TAGGER = TokenClassificationHeadConfig(num_labels=3)
# transformers' names -> archit's, by prefix: the body is under model._core., the head is `head`.
ROBERTA_NAMES = (("roberta.", "model._core."), ("classifier.weight", "head.dense.weight"),
                 ("classifier.bias", "head.dense.bias"), ("classifier", "head"))
LLAMA_NAMES = (("model.", "model._core."), ("lm_head.weight", "head.dense.weight"), ("lm_head", "head"))

ROBERTA_DISK_MAP = {"roberta.embeddings": "cpu", "roberta.encoder.layer.0": "cpu", "roberta.encoder.layer.1": "disk",
                    "classifier": "disk"}
LLAMA_DISK_MAP = {"model.embed_tokens": "cpu", "model.layers.0": "disk", "model.layers.1": "cpu", "model.norm": "disk",
                  "model.rotary_emb": "cpu", "lm_head": "disk"}


def rename(name: str, names: Tuple[Tuple[str, str], ...]) -> str:
    for old, new in names:
        if old.endswith(".") and name == old[:-1]:  # The prefix's module itself: "roberta" -> "model._core".
            return new[:-1]
        if name == old or name.startswith(old if old.endswith(".") else old + "."):
            return new + name[len(old):]
    return name


def archit_map(device_map: Dict[str, object], names) -> Dict[str, object]:
    return {rename(module, names): device for module, device in device_map.items()}


def devices_of(model: torch.nn.Module) -> Dict[str, str]:
    """Each parameter's device as ``hf_device_map`` places it (the longest prefix), or ``"meta"``-backed disk."""
    device_map = getattr(model, "hf_device_map", None) or {"": "cpu"}
    devices = {}
    for name, _ in model.named_parameters():
        best = max((prefix for prefix in device_map
                    if prefix == "" or name == prefix or name.startswith(prefix + ".")), key=len)
        devices[name] = str(device_map[best])
    return devices


def assert_placed_alike(ours: torch.nn.Module, reference: torch.nn.Module, names) -> None:
    """Every parameter of transformers' model is where archit's same parameter is, and on meta (disk) alike."""
    expected = {rename(name, names): device for name, device in devices_of(reference).items()}
    actual = devices_of(ours)
    assert {k: actual[k] for k in expected} == expected
    on_meta = {rename(n, names) for n, p in reference.named_parameters() if p.device.type == "meta"}
    assert {n for n, p in ours.named_parameters() if p.device.type == "meta"} == on_meta


def folder_files(folder: Path) -> List[str]:
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def renamed_files(files: List[str], names) -> List[str]:
    """Offload file names (``<tensor>.dat``, ``<tensor>.safetensors``, ``index.json``) in archit's tensor names."""
    out = []
    for file in files:
        stem, dot, extension = file.rpartition(".")
        out.append(rename(stem, names) + dot + extension if file != "index.json" else file)
    return sorted(out)


@pytest.fixture(scope="module")
def tagger_checkpoints(tmp_path_factory) -> Dict[str, Path]:
    """A tiny RobertaForTokenClassification, as safetensors and as a .bin written with torch.save."""
    folder = tmp_path_factory.mktemp("tagger")
    model = save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=3),
                                    folder / "safetensors")
    (folder / "bin").mkdir()
    model.config.save_pretrained(str(folder / "bin"))
    torch.save(model.state_dict(), str(folder / "bin" / "pytorch_model.bin"))
    return {"safetensors": folder / "safetensors", "bin": folder / "bin"}


@pytest.fixture(scope="module")
def llama_checkpoint(tmp_path_factory) -> Path:
    return save_causal_lm("llama", tmp_path_factory.mktemp("llama"))


def load_tagger(folder, **kwargs):
    return ForSingleLabelTokenClassification.from_pretrained(str(folder), RobertaBaseModel, head_config=TAGGER,
                                                             attn_implementation="eager", **kwargs).eval()


def reference_tagger(folder, **kwargs):
    return transformers.RobertaForTokenClassification.from_pretrained(str(folder), attn_implementation="eager",
                                                                      **kwargs).eval()


def logits(model) -> torch.Tensor:
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


@pytest.mark.parametrize("form", ["safetensors", "bin"])
def test_disk_entries_in_a_device_map(tagger_checkpoints, form, tmp_path):
    """Tensors the map puts on disk stay on meta and are read by accelerate's hooks: from the safetensors checkpoint
    itself (nothing written), or from what each era writes into offload_folder for a .bin (4.x: accelerate's ``.dat``
    files and ``index.json``; 5.x: a safetensors file per tensor), with equal logits."""
    folder = tagger_checkpoints[form]
    reference = reference_tagger(folder, device_map=ROBERTA_DISK_MAP, offload_folder=str(tmp_path / "theirs"))
    model = load_tagger(folder, device_map=archit_map(ROBERTA_DISK_MAP, ROBERTA_NAMES),
                        offload_folder=str(tmp_path / "ours"))
    assert model.hf_device_map == archit_map(reference.hf_device_map, ROBERTA_NAMES)
    assert_placed_alike(model, reference, ROBERTA_NAMES)
    assert model.head.dense.weight.device.type == "meta"
    assert renamed_files(folder_files(tmp_path / "ours"), ()) == \
        renamed_files(folder_files(tmp_path / "theirs"), ROBERTA_NAMES)
    assert_same_outputs(logits(model), logits(reference))


def test_disk_without_offload_folder(tagger_checkpoints):
    """A safetensors checkpoint needs no offload_folder (every tensor is read in place); a .bin one does, and both
    refuse to load it without, naming offload_folder; the plan says so before any tensor is read."""
    device_map = archit_map(ROBERTA_DISK_MAP, ROBERTA_NAMES)
    reference = reference_tagger(tagger_checkpoints["safetensors"], device_map=ROBERTA_DISK_MAP)
    model = load_tagger(tagger_checkpoints["safetensors"], device_map=device_map)
    assert_same_outputs(logits(model), logits(reference))
    if expected_era() != "5.0":  # 5.x write a .bin's offloaded tensors into offload_folder too, and refuse without one.
        with pytest.raises(ValueError, match="offload_folder"):
            reference_tagger(tagger_checkpoints["bin"], device_map=ROBERTA_DISK_MAP)
    with pytest.raises(ValueError, match="offload_folder"):
        load_tagger(tagger_checkpoints["bin"], device_map=device_map)
    plan = plan_loading(ForSingleLabelTokenClassification, str(tagger_checkpoints["bin"]), RobertaBaseModel, TAGGER,
                        device_map=device_map)
    assert plan.error is not None and "offload_folder" in plan.error


def test_plan_says_where_each_tensor_goes(tagger_checkpoints, tmp_path):
    """plan_loading with the same keywords answers the device map the model gets and the tensors left on disk, and
    which of them are read in place."""
    device_map = archit_map(ROBERTA_DISK_MAP, ROBERTA_NAMES)
    plan = plan_loading(ForSingleLabelTokenClassification, str(tagger_checkpoints["safetensors"]), RobertaBaseModel,
                        TAGGER, device_map=device_map, offload_folder=str(tmp_path))
    model = load_tagger(tagger_checkpoints["safetensors"], device_map=device_map, offload_folder=str(tmp_path))
    assert plan.device_map == model.hf_device_map
    assert set(plan.disk) == {n for n, p in model.named_parameters() if p.device.type == "meta"}
    assert all(tensor.in_place for tensor in plan.disk.values())


@pytest.mark.parametrize("dtype,memory", [(None, "60KB"), (torch.bfloat16, "30KB")], ids=["fp32", "bf16"])
def test_auto_with_small_max_memory_llama(llama_checkpoint, tmp_path, dtype, memory):
    """``device_map="auto"`` with a ``max_memory["cpu"]`` too small for the model: the same parameters on the CPU and
    on disk as transformers' LlamaForCausalLM (inferred by each era's own functions, sized in the dtype loaded), equal
    logits and tokens."""
    dtypes = {} if dtype is None else transformers_dtype_kwargs(dtype)
    reference = transformers.LlamaForCausalLM.from_pretrained(
        str(llama_checkpoint), attn_implementation="eager", device_map="auto", max_memory={"cpu": memory},
        offload_folder=str(tmp_path / "theirs"), **dtypes).eval()
    model = ForCausalLM.from_pretrained(str(llama_checkpoint), AutoBaseModel, attn_implementation="eager",
                                        device_map="auto", max_memory={"cpu": memory},
                                        offload_folder=str(tmp_path / "ours"), dtype=dtype).eval()
    assert "disk" in reference.hf_device_map.values() and "cpu" in reference.hf_device_map.values()
    assert_placed_alike(model, reference, LLAMA_NAMES)
    # 4.36-4.4x's LlamaForCausalLM upcasts its logits to float32; archit's head answers them in the dtype loaded.
    assert_same_outputs(logits(model).float(), logits(reference).float())
    input_ids, attention_mask = left_padded_prompts(pad_token_id=0)
    kwargs = dict(max_new_tokens=4, do_sample=False)
    assert torch.equal(model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs),
                       reference.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs))


def test_disk_map_llama_generates(llama_checkpoint, tmp_path):
    reference = transformers.LlamaForCausalLM.from_pretrained(
        str(llama_checkpoint), attn_implementation="eager", device_map=LLAMA_DISK_MAP,
        offload_folder=str(tmp_path / "theirs")).eval()
    model = ForCausalLM.from_pretrained(str(llama_checkpoint), AutoBaseModel, attn_implementation="eager",
                                        device_map=archit_map(LLAMA_DISK_MAP, LLAMA_NAMES),
                                        offload_folder=str(tmp_path / "ours")).eval()
    assert_placed_alike(model, reference, LLAMA_NAMES)
    assert_same_outputs(logits(model), logits(reference))
    input_ids, attention_mask = left_padded_prompts(pad_token_id=0)
    kwargs = dict(max_new_tokens=4, do_sample=False)
    assert torch.equal(model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs),
                       reference.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs))


def test_offload_buffers(tagger_checkpoints, tmp_path):
    """offload_buffers= goes to accelerate's hooks as transformers passes it (4.39+); before 4.39 transformers' own
    from_pretrained has no such keyword and both refuse it with a TypeError."""
    device_map = {"roberta.embeddings": "disk", "roberta.encoder": "cpu", "dropout": "cpu", "classifier": "cpu"}
    ours = {"model._core.embeddings": "disk", "model._core.encoder": "cpu", "head": "cpu"}  # archit's head has its dropout.
    folder = tagger_checkpoints["safetensors"]
    if TRANSFORMERS_VERSION < Version("4.39.0.dev0"):
        with pytest.raises(TypeError, match="offload_buffers"):
            reference_tagger(folder, device_map=device_map, offload_folder=str(tmp_path), offload_buffers=True)
        with pytest.raises(TypeError, match="offload_buffers"):
            load_tagger(folder, device_map=ours, offload_folder=str(tmp_path), offload_buffers=True)
        return
    reference = reference_tagger(folder, device_map=device_map, offload_folder=str(tmp_path), offload_buffers=True)
    model = load_tagger(folder, device_map=ours, offload_folder=str(tmp_path), offload_buffers=True)
    assert model.model._core.embeddings._hf_hook.offload_buffers is True
    assert reference.roberta.embeddings._hf_hook.offload_buffers is True
    assert {n: str(b.device) for n, b in model.model._core.embeddings.named_buffers()} == \
        {n: str(b.device) for n, b in reference.roberta.embeddings.named_buffers()}
    assert_placed_alike(model, reference, ROBERTA_NAMES)
    assert_same_outputs(logits(model), logits(reference))


def test_model_with_heads_offloads_heads(tagger_checkpoints, tmp_path):
    """A ModelWithHeads with its heads (``heads.<name>``) and part of its body on disk: the head read in place from an
    archit checkpoint, equal logits to transformers' task model with its classifier and the same layer on disk."""
    single = load_tagger(tagger_checkpoints["safetensors"])
    single.save_pretrained(str(tmp_path / "archit"))
    reference = reference_tagger(tagger_checkpoints["safetensors"], device_map=ROBERTA_DISK_MAP)
    device_map = {"model._core.embeddings": "cpu", "model._core.encoder.layer.0": "cpu",
                  "model._core.encoder.layer.1": "disk", "heads": "disk"}
    model = ModelWithHeads.from_pretrained(str(tmp_path / "archit"), RobertaBaseModel, attn_implementation="eager",
                                           device_map=device_map).eval()
    (name,) = list(model.heads)
    assert all(p.device.type == "meta" for p in model.heads[name].parameters())
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        assert_same_outputs(model(input_ids, attention_mask).logits[name], logits(reference))


def test_a_new_head_on_disk_is_written_to_offload_folder(tagger_checkpoints, tmp_path):
    """A head that the checkpoint does not hold (a base model's checkpoint) and that the map puts on disk: transformers
    fails on every release (accelerate's hook finds no entry for it: KeyError); archit initialises it and writes it into
    offload_folder, so that it computes what the same head computes in memory."""
    base = tmp_path / "base"
    save_transformers_model(transformers.RobertaModel, roberta_config(), base)
    device_map = {"model._core": "cpu", "head": "disk"}
    with pytest.raises(ValueError, match="offload_folder"):
        load_tagger(base, device_map=device_map)
    torch.manual_seed(0)
    model = load_tagger(base, device_map=device_map, offload_folder=str(tmp_path / "off"))
    torch.manual_seed(0)
    in_memory = load_tagger(base)
    assert model.head.dense.weight.device.type == "meta"
    assert folder_files(tmp_path / "off")
    assert_same_outputs(logits(model), logits(in_memory))


def test_offload_state_dict_is_accepted(tagger_checkpoints, tmp_path):
    """offload_state_dict= (4.x: park the CPU state dict on disk while loading; 5.x: ignored) changes nothing."""
    device_map = archit_map(ROBERTA_DISK_MAP, ROBERTA_NAMES)
    for value in (True, False):
        model = load_tagger(tagger_checkpoints["safetensors"], device_map=device_map, offload_state_dict=value,
                            offload_folder=str(tmp_path))
        assert_same_outputs(logits(model), logits(reference_tagger(tagger_checkpoints["safetensors"])))


def test_one_device_map_is_recorded_as_each_era_records_it(tagger_checkpoints):
    """4.x hand every device map to accelerate's dispatch_model, which records ``hf_device_map``; 5.x dispatch only a
    map with several devices or disk."""
    device_map = {"roberta": "cpu", "classifier": "cpu"}
    reference = reference_tagger(tagger_checkpoints["safetensors"], device_map=device_map, offload_folder=None)
    model = load_tagger(tagger_checkpoints["safetensors"], device_map=archit_map(device_map, ROBERTA_NAMES))
    assert hasattr(model, "hf_device_map") == hasattr(reference, "hf_device_map")
    if hasattr(reference, "hf_device_map"):
        assert model.hf_device_map == archit_map(reference.hf_device_map, ROBERTA_NAMES)



GPT2_NAMES = (("transformer.", "model._core."), ("lm_head.weight", "head.dense.weight"), ("lm_head", "head"))


ACCELERATE_VERSION = Version(importlib.metadata.version("accelerate"))


@pytest.mark.parametrize("placement", ["auto", pytest.param("tied-on-disk", marks=pytest.mark.skipif(
    ACCELERATE_VERSION < Version("1.0"), reason=f"accelerate {ACCELERATE_VERSION}'s hooks fail on a tied matrix on disk "
                                                f"(KeyError: 'cpu'), for transformers' own model as for archit's"))])
def test_tied_output_matrix(tmp_path, placement):
    """GPT-2's output matrix is its input embeddings: "auto" keeps both on one device, and a map that puts both on disk
    reads the one tensor under both names, as transformers' GPT2LMHeadModel does; equal logits."""
    folder = save_causal_lm("gpt2", tmp_path / "gpt2")
    if placement == "auto":
        theirs: Dict[str, object] = {"device_map": "auto", "max_memory": {"cpu": "45KB"}}
        ours: Dict[str, object] = {"device_map": "auto", "max_memory": {"cpu": "45KB"}}
    else:
        device_map = {"transformer.wte": "disk", "lm_head": "disk", "transformer.wpe": "cpu", "transformer.drop": "cpu",
                      "transformer.h": "cpu", "transformer.ln_f": "cpu"}
        theirs, ours = {"device_map": device_map}, {"device_map": archit_map(device_map, GPT2_NAMES)}
    reference = transformers.GPT2LMHeadModel.from_pretrained(
        str(folder), attn_implementation="eager", offload_folder=str(tmp_path / "theirs"), **theirs).eval()
    model = ForCausalLM.from_pretrained(str(folder), AutoBaseModel, attn_implementation="eager",
                                        offload_folder=str(tmp_path / "ours"), **ours).eval()
    assert model.tiesWeights()
    assert_placed_alike(model, reference, GPT2_NAMES)
    # transformers' own fails to run the tied matrix on disk on some releases (4.4x: its offload index lacks lm_head's
    # name, KeyError); archit's index names it: compared with transformers' model in memory.
    in_memory = transformers.GPT2LMHeadModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    assert_same_outputs(logits(model), logits(in_memory))
