"""Backend for transformers 4.36 – 4.49: attention chosen by the classmethod ``_autoset_attn_implementation``."""
from typing import Optional

import torch
from transformers import PretrainedConfig
from transformers.modeling_utils import no_init_weights as no_init_weights

from ._common import WrapperWithoutOwnWeights
from ._common import get_config_dtype as get_config_dtype
from ._common import init_core_module as init_core_module
from ._common import no_split_modules as no_split_modules
from ._common import resolve_file as resolve_file
from ._common import stored_config_dict as stored_config_dict

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
