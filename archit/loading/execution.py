"""Executing a ``LoadPlan`` (``planning.py``): assign each placement's tensors to the model built on the meta device
(safetensors tensors straight from the file, converted unit by unit), initialise what the plan says is new, tie, place
on devices; report what was done."""
import logging
import os
from typing import Any, Dict, List, Optional, Type

import torch
from accelerate.utils import set_module_tensor_to_device
from torch import nn

from .. import _compat as compat
from .building import Built, Layout
from .commits import open_settled
from .devices import DevicePlacement, Offload
from .files import CheckpointReader, WeightFiles, wrong_dtype_kind
from .integrity import verify_weight_files
from .keys import model_key_for
from .options import LoadOptions
from .planning import LoadPlan, Mismatch, Refusal, named_tensors, needed_from_checkpoint, refusal_for

logger = logging.getLogger(__name__)


def execute(plan: LoadPlan, built: Built, options: LoadOptions, reader: CheckpointReader, weights: WeightFiles) -> Dict[str, Any]:
    """Load the checkpoint into ``built.model`` as ``plan`` says; answers the loading info (``output_loading_info``).
    Raises the plan's refusal before reading any tensor data; a converted tensor whose shape turns out to differ from
    the model's is refused (or initialised anew with ``ignore_mismatched_sizes``) once converted. Tensors that go to
    ``"disk"`` stay on the meta device: the plan's in-place ones are not read at all, the others are written into
    ``offload_folder``; accelerate's hooks read both through one offload index."""
    _raise(plan.refusal)
    if plan.fsdp_receiver is not None:
        return _leave_for_broadcast(plan, built, plan.fsdp_receiver)
    model, dtype = built.model, built.dtype
    placement = plan.placement
    offload = Offload(plan.disk, options.offload_folder)
    converted = {target: list(keys) for target, keys in plan.converted.items()}
    sharded_core = built.layout.core_path if options.tensor_parallel else None
    zero3 = compat.zero3_enabled()  # The model was built inside DeepSpeed's init context: partitioned parameters.
    late = _assign(plan, model, reader, placement, dtype, converted, weights, offload, sharded_core, zero3)
    if late and not options.ignore_mismatched_sizes:
        _raise(refusal_for(plan.checkpoint, model, options, late, [], []))
    model.tie_weights()
    if plan.embeddings_copied_to is not None:
        offload.copy_input_embeddings(model, plan.embeddings_copied_to, placement, dtype)
    missing = [name for name, tensor in named_tensors(model) if tensor.device.type == "meta" and name not in offload.index]
    if zero3:  # Nothing is on the meta device: what the plan found missing, and what turned out mismatched.
        missing = [*plan.missing, *(target for target, _, _ in late)]
    new_base = needed_from_checkpoint(missing, built.layout, not built.expect_new_head)
    if sharded_core is not None and any(name.startswith(sharded_core) for name in missing):
        raise NotImplementedError(f"{type(model).__name__}: body tensors the checkpoint at '{plan.checkpoint}' lacks "
                                  f"would be initialised shard by shard under tensor parallelism, which archit does "
                                  f"not do: {[name for name in missing if name.startswith(sharded_core)]}.")
    if new_base and plan.unexpected and not options.ignore_unplaced_weights:  # Converted outputs that went nowhere.
        _raise(refusal_for(plan.checkpoint, model, options, [], list(plan.unexpected), new_base))
    if zero3:  # As transformers: the new tensors initialised whole (gathered), rank 0's values kept.
        with compat.zero3_gathered([_tensor_at(model, name) for name in missing
                                    if compat.is_partitioned(_tensor_at(model, name))], modifier_rank=0):
            _initialise(model, missing, placement, dtype, built.layout, in_place=True)
    else:
        _initialise(model, missing, placement, dtype, built.layout)
    offload.write_initialised(model, missing)
    model.tie_weights()
    offload.index_tied_aliases(model)
    if dtype is not None:
        compat.set_config_dtype(model.base_model.config, dtype)
    offload.save()
    placement.finish(model, options.offload_folder, offload.index, bool(options.offload_buffers))
    model.eval()
    logger.info("Loaded %d tensors of %s from '%s'%s%s.", len(plan.placements), type(model).__name__, plan.checkpoint,
                f", {len(converted)} of them converted by transformers {compat.TRANSFORMERS_VERSION}'s rules"
                if converted else "", f"; {len(offload.index)} on disk" if offload.index else "")
    return {"missing_keys": missing, "unexpected_keys": list(plan.unexpected),
            "mismatched_keys": [*plan.mismatched, *late], "converted_keys": converted, "error_msgs": []}


def _leave_for_broadcast(plan: LoadPlan, built: Built, receiver: compat.FsdpReceiver) -> Dict[str, Any]:
    """The plan executed on a rank that receives its weights under FSDP's RAM-efficient loading (``plan.fsdp_receiver``):
    no tensor data is read. Every tensor the checkpoint fills becomes an empty CPU tensor of its shape and dtype; the
    new ones are initialised on the CPU, or left on the meta device, as the installed transformers leaves them; buffers
    built with computed values (non-persistent ``position_ids``, rotary ``inv_freq``) keep them. accelerate's FSDP
    preparation then gives this rank local rank 0's tensors. Converted tensors whose shape turns out to differ are
    rank 0's to find (it reads them); here they count as loaded."""
    model, dtype = built.model, built.dtype
    new = set(plan.missing) | {key for key, _, _ in plan.mismatched}
    initialise: List[str] = []
    for name, tensor in list(named_tensors(model)):
        if tensor.device.type != "meta":
            continue  # A buffer built with its computed value.
        if name in new:
            if not receiver.new_on_meta:
                initialise.append(name)
            continue
        empty_dtype = dtype if (dtype is not None and tensor.is_floating_point()) else tensor.dtype
        set_module_tensor_to_device(model, name, "cpu", value=torch.empty(tensor.shape, dtype=empty_dtype),
                                    dtype=empty_dtype)
    model.tie_weights()
    _initialise(model, initialise, DevicePlacement.plan(model, None, None, dtype), dtype, built.layout)
    model.tie_weights()
    if dtype is not None:
        compat.set_config_dtype(model.base_model.config, dtype)
    model.eval()
    logger.info("Read no tensor data of '%s': under FSDP's RAM-efficient loading, this rank receives local rank 0's "
                "%d tensors when accelerate prepares the model (new ones %s).", plan.checkpoint, len(plan.placements),
                "left on the meta device" if receiver.new_on_meta else "initialised here")
    return {"missing_keys": list(plan.missing), "unexpected_keys": list(plan.unexpected),
            "mismatched_keys": list(plan.mismatched), "converted_keys": {t: list(k) for t, k in plan.converted.items()},
            "error_msgs": []}


def _raise(refusal: Optional[Refusal]) -> None:
    if refusal is not None:
        raise refusal.error()


def _assign(plan: LoadPlan, model: nn.Module, reader: CheckpointReader, placement: DevicePlacement,
            dtype: Optional[torch.dtype], converted: Dict[str, List[str]], weights: WeightFiles,
            offload: Offload, sharded_core: Optional[str] = None, zero3: bool = False) -> List[Mismatch]:
    """Convert each placement's unit and assign its tensors (a rule may produce several: the outputs past the first are
    named once converted), giving back the memory of the file pages of sources that did not become the parameter
    itself; answers the converted tensors whose shape differs from the model's. ``sharded_core``: the path of a core
    distributed by tensor parallelism, whose tensors each rank takes its part of (``compat.load_sharded``); ``zero3``:
    parameters partitioned by DeepSpeed ZeRO-3, each filled gathered, by rank 0 (``compat.zero3_load``)."""
    expected = model.state_dict(keep_vars=True)
    late: List[Mismatch] = []
    total_bytes = sum(open_settled(path, os.path.getsize) for path in weights.paths)
    placements = plan.placements
    for item in compat.progress(placements, len(placements), "Loading weights", len(placements), total_bytes):
        if offload.reads_in_place(item.target):
            continue  # Read from the checkpoint's file by accelerate's hooks when its module runs.
        outputs = item.unit.convert()
        kept = False  # Whether a tensor read from the file became a parameter or buffer itself (not a copy of it).
        for name in list(outputs):
            tensor = outputs.pop(name)  # Dropped as soon as it is assigned: no unit's tensors outlive their turn.
            target = item.target if name == item.unit.name else model_key_for(name, plan.state_keys, plan.naming)
            if target is None or target in plan.aliases:
                continue
            shape = tuple(compat.full_shape(expected[target]))
            if tuple(tensor.shape) != shape:
                late.append((target, tuple(tensor.shape), shape))
                continue
            error = wrong_dtype_kind(tensor.dtype, expected[target].dtype, reader.path_of(item.stored[0]),
                                     item.stored[0], target)
            if error is not None:
                raise error
            if item.unit.converted:
                converted[target] = list(item.stored)
            if offload.takes(target):
                offload.write(target, tensor)
                continue
            if sharded_core is not None and target.startswith(sharded_core) and compat.load_sharded(
                    model.base_model, target[len(sharded_core):], tensor, dtype if tensor.is_floating_point() else None):
                kept = True  # The shard may be a view of the file's pages: they stay.
                continue
            if zero3 and compat.is_partitioned(expected[target]):
                compat.zero3_load(_tensor_at(model, target), tensor)
                continue
            set_module_tensor_to_device(model, target, placement.memory_device_of(target), value=tensor,
                                        dtype=dtype if tensor.is_floating_point() else None)
            kept = kept or (not item.unit.computed and _tensor_at(model, target).data_ptr() == tensor.data_ptr())
        if not kept:  # Read only (merged, cast, moved): the file pages it touched are given back (pages.py).
            for key in item.stored:
                reader.release(key)
    return late


def _tensor_at(model: nn.Module, name: str) -> torch.Tensor:
    module_name, _, tensor_name = name.rpartition(".")
    return getattr(model.get_submodule(module_name), tensor_name)


def verify_weights(checkpoint: str, weights: WeightFiles) -> None:
    """``from_pretrained(..., verify=True)``: raise ``CheckpointError`` for the first damaged weight file; say when
    some files carry no checksum (their structure is checked, their tensor data cannot be)."""
    checks = verify_weight_files(weights.paths, weights.index)
    damaged = [check.error for check in checks if check.error is not None]
    if damaged:
        raise damaged[0]
    unverified = [check.name for check in checks if check.status == "unverified"]
    if unverified:
        logger.warning("Checkpoint '%s': %s carry no checksum (written by transformers, the published ArchIt or an "
                       "older archit): their structure is sound, their tensor data could not be verified.",
                       checkpoint, ", ".join(unverified))
    else:
        logger.info("Checkpoint '%s': every weight file's checksum matches.", checkpoint)


def _initialise(model: nn.Module, missing: List[str], placement: DevicePlacement, dtype, layout: Layout,
                in_place: bool = False) -> None:
    """Give every tensor the checkpoint did not supply memory and its owner's initialisation, leaving loaded tensors
    of the same modules untouched; ``in_place``: the tensors have their memory already (ZeRO-3, gathered)."""
    by_module: Dict[str, List[str]] = {}
    for name in missing:
        module_name, _, tensor_name = name.rpartition(".")
        by_module.setdefault(module_name, []).append(tensor_name)
    for module_name, tensor_names in by_module.items():
        module = model.get_submodule(module_name)
        for tensor_name in tensor_names if not in_place else ():
            full = f"{module_name}.{tensor_name}" if module_name else tensor_name
            old = getattr(module, tensor_name)
            new_dtype = dtype if (dtype is not None and old.is_floating_point()) else old.dtype
            set_module_tensor_to_device(model, full, placement.memory_device_of(full),
                                        value=torch.empty(old.shape, dtype=new_dtype), dtype=new_dtype)
        loaded = {n: t.detach().clone() for n, t in list(module.named_parameters(recurse=False))
                  + list(module.named_buffers(recurse=False)) if n not in tensor_names}
        _initialise_module(model, module_name, module, layout)
        with torch.no_grad():
            for n, t in loaded.items():
                getattr(module, n).copy_(t)


def _initialise_module(model: nn.Module, module_name: str, module: nn.Module, layout: Layout) -> None:
    if layout.head_path is not None and (module_name + ".").startswith(layout.head_path):
        _owning_head(model, module_name)._init_weights(module)
    elif (module_name + ".").startswith(layout.core_path):
        compat.init_core_module(model.base_model, module)
    elif hasattr(module, "reset_parameters"):
        module.reset_parameters()
    else:
        raise RuntimeError(f"{module_name} of {type(model).__name__} is not in the checkpoint and has no way to be "
                           f"initialised (no reset_parameters()).")


def _owning_head(model: nn.Module, module_name: str) -> nn.Module:
    """The head a module belongs to: its nearest enclosing module that initialises weights (``model.head``, or
    ``model.heads.<name>`` of a model with several heads)."""
    parts = module_name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = model.get_submodule(".".join(parts[:end]))
        if hasattr(candidate, "_init_weights"):
            return candidate
    raise RuntimeError(f"{module_name} of {type(model).__name__} belongs to no head that could initialise it.")


def report(cls: Type[Any], checkpoint: str, info: Dict[str, Any], core_path: str, expect_new_head: bool) -> None:
    """Log what the load did; ``core_path`` tells base model weights from the task's own (head, scalar mix, ...)."""
    new_base = [k for k in info["missing_keys"] if k.startswith(core_path)]
    new_head = [k for k in info["missing_keys"] if not k.startswith(core_path)]
    if new_base:
        logger.warning("Some base model weights of %s were not in the checkpoint at '%s' and are newly initialised: "
                       "%s. You should probably train this model before using it.", cls.__name__, checkpoint, new_base)
    if new_head:
        (logger.info if expect_new_head else logger.warning)(
            "The head of %s is newly initialised (not in the checkpoint at '%s'): %s.", cls.__name__, checkpoint, new_head)
    if info["mismatched_keys"]:
        logger.warning("Some weights of the checkpoint at '%s' did not match the size in %s and were newly "
                       "initialised: %s.", checkpoint, cls.__name__,
                       [f"{k}: checkpoint {a} vs model {b}" for k, a, b in info["mismatched_keys"]])
    if info["unexpected_keys"]:
        logger.warning("Some weights of the checkpoint at '%s' were not used by %s: %s.",
                       checkpoint, cls.__name__, info["unexpected_keys"])
