"""Backend for transformers 4.36 – 4.49: attention chosen by the classmethod ``_autoset_attn_implementation``."""
from typing import Optional

import torch
from transformers import PretrainedConfig
from transformers.modeling_utils import no_init_weights as no_init_weights

from .all_eras import WrapperWithoutOwnWeights

ERA = "4.36"


class PreTrainedWrapper(WrapperWithoutOwnWeights):
    """``PreTrainedModel`` for models that wrap a transformers core: the core decides attention and initialises itself."""

    @classmethod
    def _autoset_attn_implementation(cls, config, *args, **kwargs):
        return config  # The wrapped core validates and sets the implementation when it is built.


def set_attn_implementation(config: PretrainedConfig, implementation: Optional[str]) -> None:
    config._attn_implementation_internal = implementation
    if hasattr(config, "_attn_implementation_autoset"):  # 4.48+
        config._attn_implementation_autoset = False


def set_config_dtype(config: PretrainedConfig, dtype: torch.dtype) -> None:
    config.torch_dtype = dtype
