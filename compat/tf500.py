"""Backend for transformers 5.x: dataclass configs with ``dtype``; attention and experts implementations checked (and,
when none is requested, chosen) at every ``PreTrainedModel.__init__`` by ``_check_and_adjust_attn_implementation`` and
``_check_and_adjust_experts_implementation``; a common initialisation scheme run from ``post_init``."""
import copy
import functools
import logging
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from accelerate.utils import find_tied_parameters
from torch import Tensor
from transformers import GenerationMixin as TransformersGenerationMixin
from transformers import PretrainedConfig, PreTrainedModel
from transformers.conversion_mapping import get_model_conversion_mapping
from transformers.core_model_loading import (
    WeightConverter,
    WeightRenaming,
    dot_natural_key,
    rename_source_key,
    revert_weight_conversion,
)
from transformers.initialization import no_init_weights as no_init_weights
from transformers.integrations.accelerate import get_balanced_memory, get_max_memory, infer_auto_device_map
from transformers.integrations.accelerate import offload_weight as transformers_offload_weight
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.auto.auto_factory import add_generation_mixin_to_remote_model
from transformers.models.modernbert.configuration_modernbert import ModernBertConfig

from .all_eras import ConversionUnit, FsdpReceiver, WrapperWithoutOwnWeights, dispatch, fsdp_receiver_where, reading
from .version import TRANSFORMERS_VERSION

try:  # 5.15+: transformers.distributed shards the model built on meta (DTensor placeholders) before loading.
    from transformers.distributed.configuration_utils import DistributedConfig
    from transformers.distributed.sharding_utils import DtensorShardOperation, _dtensor_from_local_like
    from transformers.distributed.utils import is_dtensor

    _SHARDS_BEFORE_LOADING = True
except ImportError:  # 5.0-5.14: hooks on the model built on meta; each tensor sharded as it is loaded.
    from transformers.integrations.tensor_parallel import distribute_model, initialize_tensor_parallelism

    _SHARDS_BEFORE_LOADING = False
try:  # 5.0-5.15: a tensor its plan shards, left plain on the model built on meta, is sliced by its style as it loads.
    from torch.distributed.tensor import DTensor
    from transformers.integrations.tensor_parallel import _get_parameter_tp_plan, add_tensor_parallel_hooks_to_module

    _SHARDS_BY_STYLE = True
except ImportError:  # 5.16+: every tensor the plan shards is a DTensor placeholder.
    _SHARDS_BY_STYLE = False
# The registry of parallel styles moved twice: integrations.tensor_parallel (5.0-5.15), distributed.tensor_parallel
# (5.16-5.21), distributed.parallel_utils (5.22+).
try:
    from transformers.distributed.parallel_utils import ALL_PARALLEL_STYLES
except ImportError:
    try:
        from transformers.distributed.tensor_parallel import ALL_PARALLEL_STYLES
    except ImportError:
        from transformers.integrations.tensor_parallel import ALL_PARALLEL_STYLES

logger = logging.getLogger(__name__)

ERA = "5.0"
# A 5.x release renamed the key-value cache from past_key_values to cache, in forward keywords and output fields alike.
CACHE_NAME = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"

OFFLOAD_BUFFERS_KEYWORD = True


def infer_device_map(model: torch.nn.Module, device_map: str, max_memory: Optional[Dict[Any, Any]],
                     no_split: List[str], dtype: Optional[torch.dtype]) -> Dict[str, Any]:
    # transformers' own get_balanced_memory and infer_auto_device_map read the dtype off the model's tensors.
    if device_map == "sequential":
        memory = get_max_memory(max_memory)
    else:
        memory = get_balanced_memory(model, max_memory=max_memory, no_split_module_classes=no_split,
                                     low_zero=device_map == "balanced_low_0")
    # Tied groups as accelerate finds them (transformers reads all_tied_weights_keys, which a wrapper does not set).
    tied = find_tied_parameters(model) or [[]]
    return infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split, tied_parameters=tied)


def place(model: torch.nn.Module, core: PreTrainedModel, device_map: Dict[str, Any], offload_folder: Optional[str],
          offload_index: Dict[str, Any], offload_buffers: bool) -> None:
    devices = set(device_map.values())
    if len(devices) > 1 or "disk" in devices:
        dispatch(model, core, device_map, offload_folder, offload_index, offload_buffers)
    else:  # Loaded straight onto its one device by 5.x: no hooks, no hf_device_map.
        model.to(next(iter(devices)))


def offload_weight(weight: Tensor, name: str, folder: str, index: Dict[str, Any]) -> Dict[str, Any]:
    return transformers_offload_weight(weight, name, folder, index)


def save_offload_index(index: Dict[str, Any], folder: str) -> None:
    pass  # 5.x keep the index in the hooks only.


class PreTrainedWrapper(WrapperWithoutOwnWeights):
    """``PreTrainedModel`` for models that wrap a transformers core: the core decides attention and experts
    implementations and initialises itself."""

    def _check_and_adjust_attn_implementation(self, attn_implementation, *args, **kwargs):
        return attn_implementation  # The wrapped core validates and sets the implementation when it is built.

    def _check_and_adjust_experts_implementation(self, experts_implementation, *args, **kwargs):
        # Same. transformers' own check, run on the wrapper (whose module has no experts layers, so grouped_mm "cannot
        # dispatch"), would write "eager" into the config the core is then built from, pre-empting the core's choice.
        return experts_implementation


def set_attn_implementation(config: PretrainedConfig, implementation: Optional[str]) -> None:
    config._attn_implementation = implementation


def set_experts_implementation(config: PretrainedConfig, implementation: Union[str, Dict[str, Any]]) -> None:
    """Every 5.x release (from 5.0) chooses how mixture-of-experts layers compute; the config's property sets the
    request on its sub-configs too, as ``from_pretrained(experts_implementation=...)`` does."""
    config._experts_implementation = implementation


def set_config_dtype(config: PretrainedConfig, dtype: torch.dtype) -> None:
    config.dtype = dtype


def convert_checkpoint(model: PreTrainedModel, keys: Sequence[str], get_tensor: Callable[[str], Tensor],
                       key_mapping: Optional[Mapping[str, str]] = None) -> List[ConversionUnit]:
    """
    5.x: the rules of transformers' conversion registry for ``model`` (``get_model_conversion_mapping``: its class's and
    ``model_type``'s rules, its sub-models', the ``legacy`` set, ``key_mapping`` as leading renamings, and mappings users
    registered), applied as ``from_pretrained``'s loader applies them (``rename_source_key``, then each target's
    renaming or converter collects its tensors and ``convert`` runs the operations), one target at a time and without
    its thread pool. Nothing of transformers' tables is copied here, so a family a later release starts converting
    converts here too. ``model._weight_conversions`` is left unset, so saving reverses the registry's rules.
    """
    rules = get_model_conversion_mapping(model, dict(key_mapping) if key_mapping else None, None, True)
    renamings = [rule for rule in rules if isinstance(rule, WeightRenaming)]
    converters = [rule for rule in rules if isinstance(rule, WeightConverter)]
    converter_of = {pattern: converter for converter in converters for pattern in converter.source_patterns}
    meta_state = model.state_dict()
    prefix = model.base_model_prefix
    pending: Dict[str, Any] = {}  # first target key -> the renaming or converter collecting its tensors
    sources: Dict[str, List[str]] = {}
    converted: Dict[str, bool] = {}
    units: List[ConversionUnit] = []
    # Natural order (experts.2 before experts.10): converters merge tensors in the order they are added.
    for key in sorted(keys, key=dot_natural_key):
        renamed, pattern = rename_source_key(key, renamings, converters, prefix, meta_state)  # 4th: prefix's name varies
        if renamed not in meta_state and key in meta_state:  # As 5.5+'s loader: the key needed no rule.
            renamed, pattern = rename_source_key(key, [], [], prefix, meta_state)
        if renamed not in meta_state:
            units.append(ConversionUnit(key, [key], reading(get_tensor, key, key), False))
            continue
        if pattern is None:
            transform = pending.setdefault(renamed, WeightRenaming(key, renamed))
            pattern = key
        else:
            transform = pending.setdefault(renamed, copy.deepcopy(converter_of[pattern]))
        transform.add_tensor(renamed, key, pattern, lambda key=key: get_tensor(key))
        sources.setdefault(renamed, []).append(key)
        converted[renamed] = converted.get(renamed, False) or isinstance(transform, WeightConverter) \
            or _without_prefix(renamed, prefix) != _without_prefix(key, prefix)
    for name, transform in pending.items():
        units.append(ConversionUnit(name, sources[name], functools.partial(_run, transform, name, model), converted[name],
                                    isinstance(transform, WeightConverter)))
    return units


def _without_prefix(key: str, prefix: str) -> str:
    return key[len(prefix) + 1:] if prefix and key.startswith(prefix + ".") else key


def _run(transform: Any, name: str, model: PreTrainedModel) -> Dict[str, Tensor]:
    output = transform.convert(name, model=model, config=model.config)
    if isinstance(output, tuple):  # 5.0: (tensors, conversion errors)
        output, errors = output
        if errors:
            raise ValueError(f"transformers' conversion of {name} failed: {errors}")
    return {key: value[0] if isinstance(value, list) else value for key, value in output.items()}


def checkpoint_layout(model: PreTrainedModel, state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """5.x ``save_pretrained`` reverses its load-time conversions (``revert_weight_conversion``): fused experts are
    written per expert again, renamed heads under their 4.x names."""
    return revert_weight_conversion(model, dict(state_dict))


def as_auto_model_class(model_class: type) -> type:
    """``PreTrainedModel`` no longer inherits ``GenerationMixin``: transformers' Auto classes add it to a class of
    checkpoint code that can generate without inheriting it (``add_generation_mixin_to_remote_model``), as here."""
    return add_generation_mixin_to_remote_model(model_class)


def modernbert_config_class() -> Optional[type]:
    """Every release of this era has ModernBERT; its configuration module only is imported."""
    return ModernBertConfig


class GenerationMixin(TransformersGenerationMixin):
    """
    transformers' ``GenerationMixin`` for a causal LM whose decoder is a wrapped core (``base_model``), as this era's
    ``XForCausalLM`` classes inherit it: its generic ``prepare_inputs_for_generation`` and cache handling, with the
    core's answer to whether ``generate`` may give it a ``DynamicCache`` (transformers' rule, a class method reading
    the class's name and ``_is_stateful``, asked of the core's class rather than of the wrapper's).
    """

    def _supports_default_dynamic_cache(self) -> bool:
        return bool(TransformersGenerationMixin._supports_default_dynamic_cache.__func__(type(self.base_model)))


# FSDP RAM-efficient loading (issue 21): the functions this era's from_pretrained calls, where it looks them up.
def fsdp_receiver() -> Optional[FsdpReceiver]:
    """5.x: a rank other than local rank 0 leaves the tensors the checkpoint lacks on the meta device, as 5.23+ do
    (they read the loaded ones, mark everything initialised and re-initialise non-persistent buffers only). 5.0 (and
    5.x releases up to at least mid-2026) read the loaded ones, then give every parameter an empty CPU tensor and
    initialise it anew: the new ones end on the CPU there, which after accelerate's broadcast makes no difference."""
    return fsdp_receiver_where(new_on_meta=True)
# Tensor parallelism (issue 21): the core takes the release's plan and hooks; heads stay replicated.

TENSOR_PARALLEL_KEYWORDS: Tuple[str, ...] = ("distributed_config", "tp_plan", "tp_size", "device_mesh")


def distribute_core(core: PreTrainedModel, keywords: Dict[str, Any]) -> bool:
    """As this release's ``from_pretrained``: later 5.x turn the keywords into one ``DistributedConfig`` (``tp_plan=``
    and ``tp_size=`` deprecated, with a ``FutureWarning``), set up the mesh (``prepare_distribute_model``) and shard the
    model built on meta (``maybe_distribute_model``: DTensor placeholders, forward hooks); 5.0 sets up the mesh
    (``initialize_tensor_parallelism``; ``distributed_config`` alone means ``tp_plan="auto"``) and installs the hooks
    (``distribute_model``), the tensors being sharded as they load (``load_sharded``)."""
    if not keywords:
        return False
    config = keywords.get("distributed_config")
    tp_plan, tp_size, mesh = keywords.get("tp_plan"), keywords.get("tp_size"), keywords.get("device_mesh")
    if not _SHARDS_BEFORE_LOADING:
        if config is not None and tp_plan is None:
            tp_plan = "auto"
        if tp_plan is None and tp_size is None:
            return False
        _, mesh, tp_size = initialize_tensor_parallelism(tp_plan, tp_size=tp_size, device_mesh=mesh, device_map=None)
        distribute_model(core, tp_plan, config, mesh, tp_size)
        return True
    if config is not None and (tp_plan is not None or tp_size is not None):
        raise ValueError("Pass either distributed_config or the standalone tp_plan/tp_size arguments, not both "
                         f"(transformers {TRANSFORMERS_VERSION} refuses both together too).")
    if tp_plan is not None:
        warnings.warn(f"from_pretrained(tp_plan=...) is deprecated by transformers {TRANSFORMERS_VERSION}: pass "
                      f"distributed_config=DistributedConfig(tp_plan=...) instead.", FutureWarning, stacklevel=5)
    if tp_plan is not None or tp_size is not None:
        config = DistributedConfig(tp_plan=tp_plan, tp_size=tp_size)
    if config is None:
        if mesh is not None:  # As from_pretrained: a device_mesh alone distributes nothing.
            logger.warning("device_mesh= without distributed_config= distributes nothing (transformers %s).",
                           TRANSFORMERS_VERSION)
        return False
    config, _, mesh_manager = type(core).prepare_distribute_model(config, device_map=None)
    if mesh_manager is None:
        return False
    if type(core).maybe_distribute_model(core, config, mesh_manager) is not core:
        raise NotImplementedError(f"{type(core).__name__}: archit follows tensor parallelism of the model itself "
                                  f"(pipeline parallelism replaces it, and is not followed).")
    return True


def load_sharded(core: PreTrainedModel, name: str, tensor: Tensor, dtype: Optional[torch.dtype]) -> bool:
    """5.15+: a DTensor placeholder takes this rank's slice (``DtensorShardOperation``, wrapped like the placeholder by
    ``_dtensor_from_local_like``), as ``set_param_for_module`` does. 5.0-5.15: a plain tensor its plan shards takes its
    slice from the style's ``shard_tensor`` (a DTensor where the style makes one; 5.15's loader does both, by the
    placeholder's type). Others are left to the caller."""
    module_name, _, tensor_name = name.rpartition(".")
    module = core.get_submodule(module_name)
    placeholder = getattr(module, tensor_name)
    if _SHARDS_BEFORE_LOADING and is_dtensor(placeholder):
        device = torch.device(placeholder.device_mesh.device_type)
        local = DtensorShardOperation(placeholder).shard_tensor(tensor, device=device, dtype=dtype or placeholder.dtype)
        sharded = _dtensor_from_local_like(local, placeholder)
        setattr(module, tensor_name, torch.nn.Parameter(
            sharded, requires_grad=placeholder.requires_grad and sharded.is_floating_point()))
        return True
    mesh = getattr(core, "_device_mesh", None)
    if not _SHARDS_BY_STYLE or mesh is None or tensor_name in module._buffers:
        return False
    style = _get_parameter_tp_plan(name, core.tp_plan or {}, is_weight=True)
    if style is None:
        return False
    # As 5.0's loader (convert_and_load_state_dict_in_model, set_param_for_module); its shard_and_distribute_module
    # calls the registry's style instances as if they were classes and fails.
    layer = type(ALL_PARALLEL_STYLES[style])(device_mesh=mesh, rank=mesh.get_local_rank(), empty_param=placeholder.clone())
    local = layer.shard_tensor(_SafetensorsSlice(tensor), tensor_idx=0, device=torch.device(mesh.device_type),
                               dtype=dtype or placeholder.dtype)
    if getattr(layer, "use_dtensor", False):  # 5.0 only: 5.1-5.15 keep the local slice as a plain tensor.
        local = DTensor.from_local(local, mesh, layer.shard, run_check=False, shape=placeholder.size(),
                                   stride=placeholder.stride())
    setattr(module, tensor_name, torch.nn.Parameter(local, requires_grad=local.is_floating_point()))
    if hasattr(layer, "update_module_attributes"):  # 5.4+: in_features/out_features follow the slice.
        layer.update_module_attributes(module)
    return True


def distribute_tied_heads(model: torch.nn.Module, core: PreTrainedModel) -> None:
    """Where the release's plan shards the input embeddings over the vocabulary (``embedding_rowwise``: 5.15+ for tied
    models), a head tied to them takes the style the release's causal LMs give their tied ``lm_head``
    (``colwise_gather_output``), installed as the release installs it (a style's ``install_forward``, 5.16+; transformers'
    ``add_tensor_parallel_hooks_to_module`` before). Where the embeddings stay whole (5.0-5.14), nothing happens."""
    mesh = _tp_mesh(core)
    if mesh is None:
        return
    sharded = {id(parameter) for owner in core.modules() for parameter in owner.parameters(recurse=False)
               if _is_sharded(owner, parameter)}
    core_modules = {id(module) for module in core.modules()}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if id(module) in core_modules or id(weight) not in sharded or getattr(module, "_is_hooked", False):
            continue
        if not isinstance(module, torch.nn.Linear):
            raise NotImplementedError(f"{name} ({type(module).__name__}) is tied to a parameter that tensor "
                                      f"parallelism shards; archit shards only linear output layers with it.")
        style = ALL_PARALLEL_STYLES["colwise_gather_output"]
        if hasattr(style, "install_forward"):
            style.install_forward(module, mesh)
        else:
            add_tensor_parallel_hooks_to_module(core, module, "colwise_gather_output", name, mesh)
        module._is_hooked = True


def _is_sharded(owner: torch.nn.Module, parameter: torch.nn.Parameter) -> bool:
    """A DTensor shard (5.0, 5.15+), or a plain local slice of a module the plan styles (5.1-5.15: ``_hf_tp_plan``)."""
    if _SHARDS_BEFORE_LOADING and is_dtensor(parameter):
        return True
    return _SHARDS_BY_STYLE and (isinstance(parameter, DTensor) or getattr(owner, "_hf_tp_plan", None) is not None)


def _tp_mesh(core: PreTrainedModel) -> Any:
    """The tensor-parallel mesh of a distributed core: its mesh manager's (5.19+), else its device mesh (5.15-5.18:
    the "tp" dimension of a mesh with several); None when the core is not distributed."""
    mesh_manager = getattr(core, "_mesh_manager", None)
    if mesh_manager is not None:
        return mesh_manager.get_mesh("tp")
    mesh = getattr(core, "_device_mesh", None)
    return mesh["tp"] if mesh is not None and mesh.ndim > 1 else mesh


class _SafetensorsSlice:
    """A tensor as 5.0's sharding functions read a checkpoint tensor: a safetensors slice (``get_shape``, indexing)."""

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def get_shape(self) -> List[int]:
        return list(self.tensor.shape)

    def __getitem__(self, index: Any) -> Tensor:
        return self.tensor[index]
