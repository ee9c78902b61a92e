"""Backend for transformers 5.x: dataclass configs with ``dtype``; attention checked at every ``PreTrainedModel.__init__``
by ``_check_and_adjust_attn_implementation``; a common initialisation scheme run from ``post_init``."""
from typing import Optional

import torch
from transformers import PretrainedConfig
from transformers.initialization import no_init_weights as no_init_weights

from .all_eras import WrapperWithoutOwnWeights

ERA = "5.0"


class PreTrainedWrapper(WrapperWithoutOwnWeights):
    """``PreTrainedModel`` for models that wrap a transformers core: the core decides attention and initialises itself."""

    def _check_and_adjust_attn_implementation(self, attn_implementation, *args, **kwargs):
        return attn_implementation  # The wrapped core validates and sets the implementation when it is built.


def set_attn_implementation(config: PretrainedConfig, implementation: Optional[str]) -> None:
    config._attn_implementation = implementation


def set_config_dtype(config: PretrainedConfig, dtype: torch.dtype) -> None:
    config.dtype = dtype
