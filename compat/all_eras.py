"""Helpers that are the same on every transformers release from 4.36 to 5.x, so they are written once here and not
per era. Most use public names; these private ones have kept their meaning in every era so far:
``PreTrainedModel._init_weights`` (a model's own initialisation of one module), ``PreTrainedModel._no_split_modules``
(modules a device map must keep whole) and ``cached_file``'s ``_raise_exceptions_for_missing_entries`` /
``_raise_exceptions_for_connection_errors`` arguments (answer ``None`` for a missing file instead of raising).
Code that ships with a checkpoint (``auto_map``) goes through ``transformers.dynamic_module_utils``, whose functions
(``resolve_trust_remote_code``, ``get_class_from_dynamic_module``, ``custom_object_save``) have kept their arguments
since 4.36.
When one of them changes in a release, its helper moves into the era modules and into the ``Backend`` protocol.
"""
import contextlib
import importlib
import inspect
import re
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    ContextManager,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

import torch
from accelerate import dispatch_model, infer_auto_device_map
from accelerate.utils import get_balanced_memory, get_max_memory
from accelerate.utils import offload_weight as _accelerate_offload_weight
from accelerate.utils import save_offload_index as _accelerate_save_offload_index
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.dynamic_module_utils import (
    custom_object_save,
    get_class_from_dynamic_module,
    resolve_trust_remote_code,
)
from transformers.integrations.deepspeed import deepspeed_config, is_deepspeed_zero3_enabled
from transformers.modeling_utils import is_fsdp_enabled, is_local_dist_rank_0
from transformers.utils import TRANSFORMERS_DYNAMIC_MODULE_NAME, cached_file
from transformers.utils import logging as transformers_logging

from .version import TRANSFORMERS_VERSION

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class WrapperWithoutOwnWeights(PreTrainedModel):
    """Base of the era ``PreTrainedWrapper`` classes: the wrapped core and the head initialise their own weights."""

    def _init_weights(self, module):
        pass


# Class flags transformers reads on a model to decide what it may do with it (``generate``'s caches, attention
# implementations, compilation): booleans named ``_supports_...`` (cache classes, static caches, SDPA, ...), and these.
_FLAG_NAMES = ("_is_stateful", "_can_compile_fullgraph")


def adopt_core_flags(model: nn.Module, core: PreTrainedModel) -> None:
    """
    Give ``model``, which wraps the transformers model ``core``, the class flags of ``core``'s class that transformers
    reads on a model (``_supports_cache_class``, ``_supports_static_cache``, ``_supports_sdpa``, ``_is_stateful``,
    ``_can_compile_fullgraph``, ... whichever booleans the installed release declares), as instance attributes: a
    wrapper's class has the defaults of ``PreTrainedModel``, while what it can do is what its core can do (its cache
    class, its attention). Read from ``core``'s class by name, so a flag a release adds is adopted with no change here.
    """
    for name in dir(type(core)):
        if name.startswith("_supports_") or name in _FLAG_NAMES:
            value = getattr(type(core), name, None)
            if isinstance(value, bool):
                setattr(model, name, value)


class LegacyCacheReordering:
    """
    Beam search with a cache of the legacy format (a tuple of ``(key, value)`` per layer, batch first): the releases
    whose ``GenerationMixin`` reorders such caches through the model class's ``_reorder_cache`` (4.36 to 4.5x; their
    own raises ``NotImplementedError``, each family's ``XForCausalLM`` defines it) get it here. Every tensor of the cache
    is indexed along the batch by the beams kept, as the families' own do.
    """

    @staticmethod
    def _reorder_cache(past_key_values: Any, beam_idx: Tensor) -> Any:
        return tuple(tuple(state.index_select(0, beam_idx.to(state.device)) for state in layer)
                     for layer in past_key_values)


def hide_kwargs_from_signature(forward: F) -> F:
    """
    ``forward`` itself, advertising (``__signature__``) its parameters without its ``**kwargs``. transformers' ``Trainer``
    passes ``num_items_in_batch`` to a model that seems to normalise its loss by it, and then leaves the loss undivided
    by the gradient accumulation steps; archit's losses average themselves. 4.46 tell such a model by a ``**loss_kwargs``
    in ``forward``'s signature, 4.47 by any ``**``, 4.48+ by the model's ``accepts_loss_kwargs`` (archit's models set
    it to ``False``) and 4.36-4.45 pass nothing: this can go when archit's oldest supported release is 4.48. Calls still
    reach ``**kwargs``; only ``inspect.signature`` changes, and no wrapper is added to the call path.
    """
    signature = inspect.signature(forward)
    forward.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
        p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD])
    return forward


# The names a config.json records the weights' dtype under: ``dtype`` from 4.56, ``torch_dtype`` before. From 4.56 a
# config's ``torch_dtype`` is a deprecated alias of ``dtype`` that logs a deprecation when read or set.
CONFIG_DTYPE_KEYS = ("dtype", "torch_dtype")


def get_config_dtype(config_dict: Dict[str, Any]) -> Optional[Union[str, torch.dtype]]:
    """The weights' dtype recorded in a ``config.json`` dictionary (``dtype`` from 4.56, ``torch_dtype`` before)."""
    return config_dict.get("dtype", config_dict.get("torch_dtype"))


# Bookkeeping of 4.48 to 4.5x saying the attention was already chosen; stored as True, it stops the choice on reload.
_RUNTIME_FIELDS = ("_attn_implementation_autoset",)


def stored_config_dict(config_dict: Dict[str, Any]) -> Dict[str, Any]:
    """A config dictionary without the runtime bookkeeping some releases keep in configs; applied when archit writes a
    base config and when it reads one."""
    return {k: v for k, v in config_dict.items() if k not in _RUNTIME_FIELDS}


def init_core_module(core: PreTrainedModel, module: nn.Module) -> None:
    """Initialise ``module`` (part of ``core``) the way ``core``'s class initialises fresh weights."""
    with torch.no_grad():
        core._init_weights(module)


def no_split_modules(core: PreTrainedModel) -> List[str]:
    """Class names of ``core``'s modules that device maps must keep on one device."""
    return list(getattr(core, "_no_split_modules", None) or [])


def accelerate_device_map(model: nn.Module, device_map: str, max_memory: Optional[Dict[Any, Any]],
                          no_split: List[str], dtype: Optional[torch.dtype]) -> Dict[str, Any]:
    """The device map ``"auto"``, ``"balanced"``, ``"balanced_low_0"`` or ``"sequential"`` of ``model`` (on the meta device)
    as 4.x's ``from_pretrained`` infers it: accelerate's ``get_balanced_memory`` (``get_max_memory`` for
    ``"sequential"``), then accelerate's ``infer_auto_device_map`` with the dtype the weights load in."""
    if device_map == "sequential":
        memory = get_max_memory(max_memory)
    else:
        memory = get_balanced_memory(model, max_memory=max_memory, no_split_module_classes=no_split, dtype=dtype,
                                     low_zero=device_map == "balanced_low_0")
    return infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split, dtype=dtype)


def dispatch(model: nn.Module, core: PreTrainedModel, device_map: Dict[str, Any], offload_folder: Optional[str],
             offload_index: Optional[Dict[str, Any]], offload_buffers: bool) -> None:
    """accelerate's ``dispatch_model`` of ``model`` by ``device_map``, as ``from_pretrained`` calls it on every release:
    tensors on ``"disk"`` read through ``offload_index`` (or the ``index.json`` in ``offload_folder``) by accelerate's
    hooks, and the cache objects ``core`` names (``_skip_keys_device_placement``) left where they are."""
    dispatch_model(model, device_map=device_map, offload_dir=offload_folder, offload_index=offload_index,
                   offload_buffers=offload_buffers, skip_keys=getattr(core, "_skip_keys_device_placement", None))


# 4.36-4.57 place and offload through accelerate alone; these are their backends' functions (5.x differ).

def accelerate_place(model: nn.Module, core: PreTrainedModel, device_map: Dict[str, Any],
                     offload_folder: Optional[str], offload_index: Dict[str, Any], offload_buffers: bool) -> None:
    """4.x ``place``: ``dispatch`` every device map, one device included (so ``hf_device_map`` is always set)."""
    dispatch(model, core, device_map, offload_folder, offload_index, offload_buffers)


def accelerate_offload_weight(weight: Tensor, name: str, folder: str, index: Dict[str, Any]) -> Dict[str, Any]:
    """4.x ``offload_weight``: accelerate's ``.dat`` file per tensor in ``folder``, recorded in ``index``."""
    return _accelerate_offload_weight(weight, name, folder, index=index)


def accelerate_save_offload_index(index: Dict[str, Any], folder: str) -> None:
    """4.x ``save_offload_index``: accelerate's ``index.json`` in ``folder``, of the tensors written there (those read
    in place from a safetensors checkpoint are not)."""
    written = {name: entry for name, entry in index.items() if "safetensors_file" not in entry}
    if written:
        _accelerate_save_offload_index(written, folder)


def resolve_file(path_or_repo_id: str, filename: str, **hub_kwargs: Any) -> Optional[str]:
    """Local path of ``filename`` in a local folder or hub repository, or ``None`` when the file is absent.
    Raises ``OSError`` when the folder or repository itself cannot be found."""
    return cached_file(
        path_or_repo_id, filename,
        _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )


# The hub arguments get_class_from_dynamic_module takes in every era (4.36-4.57's resume_download is gone in 5.x).
_CODE_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "code_revision")


def trusts_checkpoint_code(trust_remote_code: bool, checkpoint: str, has_local_code: bool) -> bool:
    """
    transformers' own decision (``resolve_trust_remote_code``) whether the code a checkpoint ships is used: when the
    caller trusts it; otherwise transformers' own classes serve when they know the ``model_type``
    (``has_local_code``), and the checkpoint is refused (``ValueError``) when they do not. ``trust_remote_code`` goes
    in as a ``bool``, never ``None``, on which transformers would ask on the terminal and wait for an answer.
    """
    return bool(resolve_trust_remote_code(bool(trust_remote_code), checkpoint, has_local_code, True))


def checkpoint_code_class(class_reference: str, checkpoint: str, auto_class: str, **hub_kwargs: Any) -> type:
    """
    The class ``class_reference`` (an ``auto_map`` entry: ``"modeling_x.XModel"``, or
    ``"other/repo--modeling_x.XModel"`` for code in another repository) of the code that ships with ``checkpoint`` (a local folder or hub id), imported by
    transformers' dynamic-module machinery: this runs that code. The class is registered for ``auto_class``
    (``"AutoModel"``, ...) as transformers' Auto classes do, so that transformers' ``save_pretrained`` of a model
    built from it copies its code.
    """
    kwargs = {name: hub_kwargs[name] for name in _CODE_HUB_KWARGS if hub_kwargs.get(name) is not None}
    cls = get_class_from_dynamic_module(class_reference, checkpoint, **kwargs)
    cls.register_for_auto_class(auto_class)
    return cls


def is_checkpoint_code(cls: type) -> bool:
    """Whether ``cls`` comes from code that shipped with a checkpoint (transformers' dynamic modules)."""
    return cls.__module__.split(".")[0] == TRANSFORMERS_DYNAMIC_MODULE_NAME


def save_checkpoint_code(cls: type, directory: str) -> List[str]:
    """Copy the file defining ``cls`` (a class of checkpoint code), and the files it imports relatively, into
    ``directory``, as transformers' ``save_pretrained`` does (``custom_object_save``); the copied paths."""
    return [str(path) for path in custom_object_save(cls, directory) or []]


@dataclass
class ConversionUnit:
    """Checkpoint tensors that become tensors of a transformers model together: one tensor under another name, or
    several (per-expert matrices) merged into one fused tensor by an era's conversion rules."""
    name: str
    """The model key it produces (the first one, for rules that produce several), in that model's key space."""
    sources: List[str]
    """The checkpoint keys it reads."""
    convert: Callable[[], Dict[str, Tensor]]
    """Reads the sources and returns ``{model key: tensor}``; called once, when the tensors are assigned."""
    converted: bool
    """Whether an era's conversion rule (or a ``key_mapping``) changed a name or a tensor."""
    computed: bool = False
    """Whether its tensors are computed from the sources by an operation (merged, split, concatenated), not the sources
    themselves under another name: the sources then need not be views of the file, only read."""


def reading(get_tensor: Callable[[str], Tensor], key: str, name: str) -> Callable[[], Dict[str, Tensor]]:
    """A unit's ``convert``: checkpoint tensor ``key`` under the model key ``name``."""
    return lambda: {name: get_tensor(key)}


def first_match_renaming(key_mapping: Optional[Mapping[str, str]]) -> Callable[[str], str]:
    """A key renaming by ``{regex: replacement}``, the first pattern that matches winning: what ``from_pretrained``'s
    ``key_mapping=`` does on 4.50-4.57 (4.36-4.49 have no such argument; archit gives them the same meaning)."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in (key_mapping or {}).items()]

    def rename(key: str) -> str:
        for pattern, replacement in compiled:
            renamed, count = pattern.subn(replacement, key)
            if count:
                return renamed
        return key
    return rename


def renaming_units(keys: Sequence[str], get_tensor: Callable[[str], Tensor],
                   rename: Callable[[str], str]) -> List[ConversionUnit]:
    """One unit per checkpoint key, under its renamed key: an era whose conversions are renamings only."""
    units = []
    for key in keys:
        name = rename(key)
        units.append(ConversionUnit(name, [key], reading(get_tensor, key, name), name != key))
    return units


def enable_activation_checkpointing(model: PreTrainedModel,
                                    checkpointing_kwargs: Optional[Dict[str, Any]] = None) -> None:
    """Recompute ``model``'s activations in the backward pass instead of keeping them (``checkpointing_kwargs`` go to
    ``torch.utils.checkpoint.checkpoint``): ``activation_checkpointing_enable`` where transformers has it (5.24+, where
    ``gradient_checkpointing_enable`` is a deprecated alias that warns), ``gradient_checkpointing_enable`` before."""
    if hasattr(type(model), "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpointing_kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing_kwargs)


def disable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Keep ``model``'s activations again: ``activation_checkpointing_disable`` where transformers has it (5.24+),
    ``gradient_checkpointing_disable`` before."""
    if hasattr(type(model), "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


def is_activation_checkpointing(model: PreTrainedModel) -> bool:
    """Whether ``model`` recomputes activations in the backward pass: ``is_activation_checkpointing`` where transformers
    has it (5.24+), ``is_gradient_checkpointing`` before."""
    if hasattr(type(model), "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(model.is_gradient_checkpointing)


# Loads and saves below these sizes finish too fast for a progress bar to help.
PROGRESS_MIN_TENSORS = 2000
PROGRESS_MIN_BYTES = 2 * 2**30


def progress(items: Iterable[T], total: int, description: str, tensors: int, nbytes: int) -> Iterator[T]:
    """``items`` (``total`` of them), with transformers' own progress bar when they carry many or large tensors
    (``tensors`` tensors of ``nbytes`` bytes in all): the bar is off when transformers' progress bars are disabled
    (``transformers.utils.logging.disable_progress_bar()``), and, being a ``tqdm`` with ``disable=None``, when its
    output is not a terminal (the logs of batch jobs)."""
    big = tensors >= PROGRESS_MIN_TENSORS or nbytes >= PROGRESS_MIN_BYTES
    return iter(transformers_logging.tqdm(items, total=total, desc=description, disable=None if big else True))


# FSDP RAM-efficient loading (issue 21): what a rank that receives its weights leaves where, per era.

@dataclass(frozen=True)
class FsdpReceiver:
    """
    How this process loads under FSDP's RAM-efficient loading (``ACCELERATE_USE_FSDP=1`` and
    ``FSDP_CPU_RAM_EFFICIENT_LOADING=1`` with ``torch.distributed`` initialised, as accelerate's
    ``cpu_ram_efficient_loading`` and the Trainer's ``fsdp_config`` set them) on a rank other than local rank 0: it reads
    no tensor data, since accelerate's FSDP preparation gives it local rank 0's weights (FSDP1's
    ``sync_module_states``, FSDP2's ``fsdp2_load_full_state_dict``). The tensors the checkpoint fills are left as empty
    CPU tensors of their shape and dtype, as transformers leaves them on every release (4.x assign ``torch.empty``;
    5.x read the file into them, which the broadcast overwrites); non-persistent buffers keep their computed values
    (FSDP2 keeps each rank's own).
    """
    new_on_meta: bool
    """Where the tensors the checkpoint lacks (a new head) are left: on the meta device (5.x: accelerate materialises
    them and broadcasts rank 0's), or initialised on the CPU as on rank 0 (4.x)."""


def fsdp_receiver_where(new_on_meta: bool) -> Optional[FsdpReceiver]:
    """``FsdpReceiver(new_on_meta)`` where transformers' own ``is_fsdp_enabled()`` holds and its
    ``is_local_dist_rank_0()`` does not (``transformers.modeling_utils``' functions, the test every era's
    ``from_pretrained`` makes), else ``None``: this process reads the checkpoint."""
    return FsdpReceiver(new_on_meta) if is_fsdp_enabled() and not is_local_dist_rank_0() else None


def fsdp_receiver_4x() -> Optional[FsdpReceiver]:
    """4.x (``fsdp_receiver`` of tf436 and tf450): a rank other than local rank 0 assigns every loaded tensor
    ``torch.empty`` on the CPU (4.36-4.49 read the safetensors shards first, 4.50+ not) and initialises the new ones as
    rank 0 does."""
    return fsdp_receiver_where(new_on_meta=False)


# Tensor parallelism (issue 21) on 4.x, followed on 5.x only: tf436 and tf450 take these under the protocol's names.
NO_TENSOR_PARALLEL_KEYWORDS: Tuple[str, ...] = ()
"""4.36-4.49 have no tensor parallelism; 4.50-4.57's ``tp_plan``/``tp_size``/``device_mesh`` (sharding at load by
``shard_and_distribute_module``, hooks by ``distribute_model``, with signatures of their own) are not followed: the
keywords are refused (``LoadOptions``) before anything is built, so the functions below are not reached with any."""


def refuse_tensor_parallelism(core: PreTrainedModel, keywords: Dict[str, Any]) -> bool:
    if keywords:
        raise TypeError(f"from_pretrained() got tensor-parallel keyword arguments {sorted(keywords)}: archit follows "
                        f"tensor parallelism on transformers 5.x, not on {TRANSFORMERS_VERSION}.")
    return False


def load_unsharded(core: PreTrainedModel, name: str, tensor: Tensor, dtype: Optional[torch.dtype]) -> bool:
    return False


def leave_tied_heads(model: nn.Module, core: PreTrainedModel) -> None:
    pass


try:  # 4.4x+ (transformers issue #34429).
    from transformers.modeling_utils import set_zero3_state as _set_zero3_state
except ImportError:
    _set_zero3_state = None

# DeepSpeed ZeRO-3 (issue 21): transformers' switch (an HfDeepSpeedConfig with stage 3 alive, as the Trainer and
# accelerate keep one) and DeepSpeed's own contexts, as every era's from_pretrained uses them. deepspeed is imported
# when ZeRO-3 is on only, as transformers imports it: it is no dependency of archit.

def _deepspeed() -> Any:
    """The ``deepspeed`` module, imported on first use under ZeRO-3 only, as transformers imports it: it is no dependency
    of archit, and importing it detects accelerators (seconds) in every process that imports archit otherwise."""
    return importlib.import_module("deepspeed")


def zero3_enabled() -> bool:
    """Whether models are built and loaded for DeepSpeed ZeRO-3 (transformers' ``is_deepspeed_zero3_enabled``)."""
    return bool(is_deepspeed_zero3_enabled())


def zero3_init() -> ContextManager:
    """The context transformers builds a model in under ZeRO-3: ``deepspeed.zero.Init`` with the active DeepSpeed
    config, each parameter partitioned over the ranks as it is created, and ``zero3_state()`` inside it."""
    stack = contextlib.ExitStack()
    stack.enter_context(_deepspeed().zero.Init(config_dict_or_path=deepspeed_config()))
    stack.enter_context(zero3_state())
    return stack


def zero3_state() -> ContextManager:
    """transformers' ``set_zero3_state``: a transformers model built inside it (``from_config``) enters no
    ``deepspeed.zero.Init`` of its own (a nested one is what transformers avoids by it, issue #34429); releases that
    predate it have no such switch (a null context)."""
    return _set_zero3_state() if _set_zero3_state is not None else contextlib.nullcontext()


def zero3_gathered(parameters: List[Tensor], modifier_rank: Optional[int]) -> ContextManager:
    """``deepspeed.zero.GatheredParameters``: ``parameters`` whole on every rank inside; with ``modifier_rank=0`` what
    rank 0 writes into them is partitioned again on exit (how transformers loads and initialises under ZeRO-3)."""
    return _deepspeed().zero.GatheredParameters(parameters, modifier_rank=modifier_rank)


def is_partitioned(tensor: Tensor) -> bool:
    """Whether ``tensor`` is a parameter ZeRO-3 partitioned (its data a local piece; ``ds_shape`` its shape)."""
    return hasattr(tensor, "ds_id")


def full_shape(tensor: Tensor) -> torch.Size:
    """The shape of a model's tensor: ``ds_shape`` for a ZeRO-3 partitioned parameter, else its own."""
    return tensor.ds_shape if is_partitioned(tensor) else tensor.shape


def zero3_load(parameter: Tensor, value: Tensor) -> None:
    """Fill a ZeRO-3 partitioned ``parameter`` with ``value`` as transformers loads under ZeRO-3: gathered with
    ``modifier_rank=0``, rank 0 writes, and each rank keeps its partition of rank 0's values. Every rank calls it, for
    the same parameters in the same order (a collective)."""
    with zero3_gathered([parameter], modifier_rank=0):
        if torch.distributed.get_rank() == 0:
            with torch.no_grad():
                parameter.data.copy_(value)
