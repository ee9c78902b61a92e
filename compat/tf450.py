"""Backend for transformers 4.50 – 4.57: the loading rewrite; attention checked by ``_autoset_attn_implementation``
(up to 4.53) or ``_check_and_adjust_attn_implementation`` (4.54+); ``dtype`` replaces ``torch_dtype`` from 4.56."""
import inspect
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor
from transformers import GenerationMixin as TransformersGenerationMixin
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_utils import no_init_weights as no_init_weights
from transformers.models.auto.auto_factory import add_generation_mixin_to_remote_model
from transformers.models.modernbert.configuration_modernbert import ModernBertConfig

# The members every 4.x backend shares come from all_eras under the protocol's names (unused here: noqa F401):
# placement and offload through accelerate alone, loading under FSDP, tensor parallelism refused.
from .all_eras import NO_TENSOR_PARALLEL_KEYWORDS as TENSOR_PARALLEL_KEYWORDS  # noqa: F401
from .all_eras import (
    ConversionUnit,
    LegacyCacheReordering,
    WrapperWithoutOwnWeights,
    first_match_renaming,
    renaming_units,
)
from .all_eras import accelerate_device_map as infer_device_map  # noqa: F401
from .all_eras import accelerate_offload_weight as offload_weight  # noqa: F401
from .all_eras import accelerate_place as place  # noqa: F401
from .all_eras import accelerate_save_offload_index as save_offload_index  # noqa: F401
from .all_eras import fsdp_receiver_4x as fsdp_receiver  # noqa: F401
from .all_eras import leave_tied_heads as distribute_tied_heads  # noqa: F401
from .all_eras import load_unsharded as load_sharded  # noqa: F401
from .all_eras import refuse_tensor_parallelism as distribute_core  # noqa: F401
from .version import TRANSFORMERS_VERSION

ERA = "4.50"
CACHE_NAME = "past_key_values"

OFFLOAD_BUFFERS_KEYWORD = True


class PreTrainedWrapper(WrapperWithoutOwnWeights):
    """``PreTrainedModel`` for models that wrap a transformers core: the core decides attention and initialises itself."""

    @classmethod
    def _autoset_attn_implementation(cls, config, *args, **kwargs):
        return config  # Up to 4.53. The wrapped core validates and sets the implementation when it is built.

    def _check_and_adjust_attn_implementation(self, attn_implementation, *args, **kwargs):
        return attn_implementation  # 4.54+. Same: the core decides.


def set_attn_implementation(config: PretrainedConfig, implementation: Optional[str]) -> None:
    config._attn_implementation_internal = implementation
    if hasattr(config, "_attn_implementation_autoset"):  # up to 4.53
        config._attn_implementation_autoset = False


def set_experts_implementation(config: PretrainedConfig, implementation: Union[str, Dict[str, Any]]) -> None:
    """4.50-4.57 have no experts implementations to choose from (5.0 brought them): ``TypeError``, as their own
    ``from_pretrained`` refuses ``experts_implementation=`` (an unexpected keyword argument of the model class)."""
    raise TypeError(f"experts_implementation={implementation!r}: transformers {TRANSFORMERS_VERSION} has no experts "
                    f"implementations to choose from (they arrived with transformers 5.0), and its own from_pretrained "
                    f"refuses the keyword too. Leave it out, or install transformers>=5.0.")


_HAS_DTYPE_FIELD = isinstance(getattr(PretrainedConfig, "torch_dtype", None), property)  # 4.56+: torch_dtype is an alias


def set_config_dtype(config: PretrainedConfig, dtype: torch.dtype) -> None:
    if _HAS_DTYPE_FIELD:
        config.dtype = dtype
    else:
        config.torch_dtype = dtype


def convert_checkpoint(model: PreTrainedModel, keys: Sequence[str], get_tensor: Callable[[str], Tensor],
                       key_mapping: Optional[Mapping[str, str]] = None) -> List[ConversionUnit]:
    """4.50-4.57 rename keys by ``key_mapping=``, or by the class's ``_checkpoint_conversion_mapping`` (4.52+, set on
    vision-language models) when none is given: regexes, the first that matches winning."""
    if key_mapping is None:
        key_mapping = getattr(model, "_checkpoint_conversion_mapping", None) or None
    return renaming_units(keys, get_tensor, first_match_renaming(key_mapping))


def checkpoint_layout(model: PreTrainedModel, state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """4.50-4.57 save the model's own layout (4.52+ reverse ``_checkpoint_conversion_mapping`` of vision-language
    task models only, which archit does not wrap)."""
    return state_dict


def as_auto_model_class(model_class: type) -> type:
    """``PreTrainedModel`` no longer inherits ``GenerationMixin``: transformers' Auto classes add it to a class of
    checkpoint code that can generate without inheriting it (``add_generation_mixin_to_remote_model``), as here."""
    return add_generation_mixin_to_remote_model(model_class)


def modernbert_config_class() -> Optional[type]:
    """Every release of this era has ModernBERT; its configuration module only is imported."""
    return ModernBertConfig


class _NoCacheReordering:
    """Releases whose ``GenerationMixin`` reorders every cache itself (``Cache.reorder_cache``), and calls a model's
    ``_reorder_cache`` only where the model defines one."""


# Up to some 4.5x, GenerationMixin reordered legacy tuple caches through the model's _reorder_cache (its own raising
# NotImplementedError); later releases have none, and call a model's own instead of reordering the cache themselves.
_CacheReordering: type = LegacyCacheReordering if hasattr(TransformersGenerationMixin, "_reorder_cache") \
    else _NoCacheReordering


class GenerationMixin(_CacheReordering, TransformersGenerationMixin):
    """
    transformers' ``GenerationMixin`` for a causal LM whose decoder is a wrapped core (``base_model``), as this era's
    ``XForCausalLM`` classes inherit it (``PreTrainedModel`` no longer does): its generic
    ``prepare_inputs_for_generation``, ``_reorder_cache`` for beam search over legacy tuple caches where the release
    still asks model classes for it, and the core's answer to whether ``generate`` may give it a ``DynamicCache``.
    """

    def _supports_default_dynamic_cache(self) -> bool:
        return _core_supports_default_dynamic_cache(self.base_model)


def _core_supports_default_dynamic_cache(core: PreTrainedModel) -> bool:
    """transformers' own rule for ``core`` (which, from 4.50, is no ``GenerationMixin`` itself): an instance method
    reading the instance's flags up to some 4.5x, a class method reading the class's after."""
    rule = TransformersGenerationMixin._supports_default_dynamic_cache
    return bool(rule.__func__(type(core)) if inspect.ismethod(rule) else rule(core))
