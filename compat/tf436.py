"""Backend for transformers 4.36 – 4.49: attention chosen by the classmethod ``_autoset_attn_implementation``;
ModernBERT from 4.48."""
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_utils import no_init_weights as no_init_weights

from .all_eras import ConversionUnit, WrapperWithoutOwnWeights, first_match_renaming, renaming_units
from .version import TRANSFORMERS_VERSION

try:  # ModernBERT arrived in 4.48, within this era. Its configuration module only (see modernbert_config_class).
    from transformers.models.modernbert.configuration_modernbert import ModernBertConfig as _ModernBertConfig
except ImportError:  # 4.36-4.47
    _ModernBertConfig = None

ERA = "4.36"
CACHE_NAME = "past_key_values"


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
