"""Backend for transformers 4.36 – 4.49: attention chosen by the classmethod ``_autoset_attn_implementation``;
ModernBERT from 4.48; ``GenerationMixin`` inherited by every ``PreTrainedModel``, with a generic
``prepare_inputs_for_generation`` from 4.45."""
import inspect
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor
from transformers import GenerationMixin as TransformersGenerationMixin
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_utils import no_init_weights as no_init_weights

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
from .version import TRANSFORMERS_GE_4_39, TRANSFORMERS_VERSION

try:  # ModernBERT arrived in 4.48, within this era. Its configuration module only (see modernbert_config_class).
    from transformers.models.modernbert.configuration_modernbert import ModernBertConfig as _ModernBertConfig
except ImportError:  # 4.36-4.47
    _ModernBertConfig = None

ERA = "4.36"
CACHE_NAME = "past_key_values"

OFFLOAD_BUFFERS_KEYWORD = TRANSFORMERS_GE_4_39


class PreTrainedWrapper(WrapperWithoutOwnWeights):
    """``PreTrainedModel`` for models that wrap a transformers core: the core decides attention and initialises itself."""

    @classmethod
    def _autoset_attn_implementation(cls, config, *args, **kwargs):
        return config  # The wrapped core validates and sets the implementation when it is built.


def set_attn_implementation(config: PretrainedConfig, implementation: Optional[str]) -> None:
    config._attn_implementation_internal = implementation
    if hasattr(config, "_attn_implementation_autoset"):  # 4.48+
        config._attn_implementation_autoset = False


def set_experts_implementation(config: PretrainedConfig, implementation: Union[str, Dict[str, Any]]) -> None:
    """4.36-4.49 have no experts implementations to choose from (5.0 brought them): ``TypeError``, as their own
    ``from_pretrained`` refuses ``experts_implementation=`` (an unexpected keyword argument of the model class)."""
    raise TypeError(f"experts_implementation={implementation!r}: transformers {TRANSFORMERS_VERSION} has no experts "
                    f"implementations to choose from (they arrived with transformers 5.0), and its own from_pretrained "
                    f"refuses the keyword too. Leave it out, or install transformers>=5.0.")


def set_config_dtype(config: PretrainedConfig, dtype: torch.dtype) -> None:
    config.torch_dtype = dtype


def convert_checkpoint(model: PreTrainedModel, keys: Sequence[str], get_tensor: Callable[[str], Tensor],
                       key_mapping: Optional[Mapping[str, str]] = None) -> List[ConversionUnit]:
    """4.36-4.49 rename legacy ``gamma``/``beta`` keys only (archit's own key renaming does that on every era); their
    ``from_pretrained`` has no ``key_mapping=``, which archit applies with 4.50's meaning."""
    return renaming_units(keys, get_tensor, first_match_renaming(key_mapping))


def checkpoint_layout(model: PreTrainedModel, state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """4.36-4.49 save the model's own layout."""
    return state_dict


def as_auto_model_class(model_class: type) -> type:
    """4.36-4.49: ``PreTrainedModel`` inherits ``GenerationMixin``, so a class of checkpoint code generates as it is."""
    return model_class


def modernbert_config_class() -> Optional[type]:
    """4.48-4.49 have ModernBERT; 4.36-4.47 do not (``None``)."""
    return _ModernBertConfig


# 4.45 gave GenerationMixin a prepare_inputs_for_generation for every model; before, it raised NotImplementedError and
# each family's XForCausalLM wrote its own.
_GENERIC_INPUT_PREPARATION = "input_ids" in inspect.signature(
    TransformersGenerationMixin.prepare_inputs_for_generation).parameters


class GenerationInputs:
    """
    What 4.36-4.44's ``GenerationMixin`` leaves to each model class, for a causal LM whose decoder is a wrapped core
    (``base_model``); drop with 4.44. Its class name must not contain "GenerationMixin": those releases' ``can_generate``
    tells a model that can generate by a ``prepare_inputs_for_generation`` defined outside a class of that name.
    """

    def prepare_inputs_for_generation(self, input_ids: Tensor, past_key_values: Any = None,
                                      attention_mask: Optional[Tensor] = None, inputs_embeds: Optional[Tensor] = None,
                                      cache_position: Optional[Tensor] = None, **kwargs: Any) -> Dict[str, Any]:
        """The inputs of the next forward: the tokens the cache does not hold yet (the prompt's embeddings, when
        given, at the first step), their positions (counted over the attention mask, so that left padding takes
        none), the cache, ``use_cache``, the attention mask and ``token_type_ids``; ``cache_position`` where the
        release's ``generate`` gives one and the core takes it."""
        past_length = 0 if past_key_values is None else _cached_length(past_key_values)
        if past_length:
            if attention_mask is not None and attention_mask.shape[1] > input_ids.shape[1]:
                # The prompt was given as inputs_embeds: input_ids holds the generated tokens only.
                input_ids = input_ids[:, -(attention_mask.shape[1] - past_length):]
            elif past_length < input_ids.shape[1]:
                input_ids = input_ids[:, past_length:]
        new_tokens = input_ids.shape[1]
        position_ids = kwargs.get("position_ids")
        if attention_mask is not None and position_ids is None:
            position_ids = attention_mask.long().cumsum(-1) - 1
            position_ids.masked_fill_(attention_mask == 0, 1)
        token_type_ids = kwargs.get("token_type_ids")
        if inputs_embeds is not None and not past_length:
            model_inputs: Dict[str, Any] = {"inputs_embeds": inputs_embeds}
        else:
            model_inputs = {"input_ids": input_ids.clone(memory_format=torch.contiguous_format)}
            position_ids = None if position_ids is None else position_ids[:, -new_tokens:]
            token_type_ids = None if token_type_ids is None else token_type_ids[:, -new_tokens:]
        core_forward = self.base_model.forward  # type: ignore[attr-defined]
        if cache_position is not None and "cache_position" in inspect.signature(core_forward).parameters:
            model_inputs["cache_position"] = cache_position
        model_inputs.update(past_key_values=past_key_values, use_cache=kwargs.get("use_cache"),
                            position_ids=position_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return model_inputs

    def generate(self, inputs: Optional[Tensor] = None, generation_config: Any = None, **kwargs: Any) -> Any:
        """``GenerationMixin.generate`` with the model's own ``generation_config`` when none is given: 4.36-4.44 would
        otherwise rebuild it from ``model.config`` (their legacy reading of generation settings in model configs),
        which for a model-with-head is the nested config, without the base config's special tokens."""
        if generation_config is None:
            generation_config = self.generation_config  # type: ignore[attr-defined]
        return super().generate(inputs, generation_config, **kwargs)  # type: ignore[misc]


class _GenericInputs:
    """4.45-4.49: ``GenerationMixin``'s own ``prepare_inputs_for_generation`` serves."""


def _cached_length(past_key_values: Any) -> int:
    """How many positions a cache holds: a ``Cache``'s, or the legacy tuple's (``(key, value)`` per layer, key
    ``batch x heads x positions x dimension``)."""
    if hasattr(past_key_values, "get_seq_length"):
        return int(past_key_values.get_seq_length())
    return int(past_key_values[0][0].shape[2])


_InputPreparation: type = _GenericInputs if _GENERIC_INPUT_PREPARATION else GenerationInputs


class GenerationMixin(_InputPreparation, LegacyCacheReordering, TransformersGenerationMixin):
    """
    transformers' ``GenerationMixin`` for a causal LM whose decoder is a wrapped core (``base_model``), with what this
    era asks of model classes: ``_reorder_cache`` for beam search over legacy tuple caches (``LegacyCacheReordering``),
    ``prepare_inputs_for_generation`` before 4.45 (``GenerationInputs``), and the core's answer to whether
    ``generate`` may give it a ``DynamicCache`` (4.42+).
    """

    def _supports_default_dynamic_cache(self) -> bool:
        return self.base_model._supports_default_dynamic_cache()
