"""The contract every per-era backend fulfils. ``archit`` relies on these names only."""
from typing import Any, ContextManager, List, Optional, Protocol, Union, runtime_checkable

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


@runtime_checkable
class Backend(Protocol):
    """What a transformers-era backend module provides."""

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

    def get_config_dtype(self, config_dict: dict) -> Optional[Union[str, torch.dtype]]:
        """The weights' dtype recorded in a ``config.json`` dictionary (``torch_dtype`` or ``dtype``), if any."""

    def stored_config_dict(self, config_dict: dict) -> dict:
        """A config dictionary without the runtime bookkeeping this era keeps in configs, as transformers writes it to
        ``config.json``; applied when archit writes a base config and when it reads one."""

    def no_init_weights(self) -> ContextManager:
        """Context in which building a transformers model skips weight initialisation (for a meta-device build that
        is filled from a checkpoint)."""

    def init_core_module(self, core: PreTrainedModel, module: nn.Module) -> None:
        """Initialise ``module`` (part of ``core``) the way ``core``'s class initialises fresh weights."""

    def no_split_modules(self, core: PreTrainedModel) -> List[str]:
        """Class names of ``core``'s modules that device maps must keep on one device."""

    def resolve_file(self, path_or_repo_id: str, filename: str, **hub_kwargs: Any) -> Optional[str]:
        """Local path of ``filename`` in a local folder or hub repository, or ``None`` when the file is absent.
        Raises ``OSError`` when the folder or repository itself cannot be found."""
