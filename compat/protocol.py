"""The contract of a per-era backend module: what differs between transformers eras, and nothing else.

Helpers that are the same in every era live in ``all_eras`` and are re-exported by the facade (``__init__``) directly.
"""
from typing import ContextManager, Optional, Protocol, runtime_checkable

import torch
from transformers import PretrainedConfig


@runtime_checkable
class Backend(Protocol):
    """What a transformers-era backend module (``tf436``, ``tf450``, ``tf500``) provides."""

    ERA: str
    """The first transformers release of the era this backend serves, e.g. ``"4.50"``."""

    PreTrainedWrapper: type
    """A ``PreTrainedModel`` subclass for models whose attention and weights live in a wrapped transformers core:
    it leaves the attention implementation to the core, initialises nothing itself and ties weights through
    ``tie_weights()`` only."""

    def set_attn_implementation(self, config: PretrainedConfig, implementation: Optional[str]) -> None:
        """Request an attention implementation (``"eager"``, ``"sdpa"``, ...) for models built from ``config``."""

    def set_config_dtype(self, config: PretrainedConfig, dtype: torch.dtype) -> None:
        """Record the dtype of the loaded weights in ``config``, under the name this era serialises."""

    def no_init_weights(self) -> ContextManager:
        """Context in which building a transformers model skips weight initialisation (for a meta-device build that
        is filled from a checkpoint)."""
