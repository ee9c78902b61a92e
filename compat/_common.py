"""Pieces that are identical in every era: public transformers names only, shared by the era modules."""
from typing import Any, Dict, List, Optional, Union

import torch
from torch import nn
from transformers import PreTrainedModel


class WrapperWithoutOwnWeights(PreTrainedModel):
    """Base of the era ``PreTrainedWrapper`` classes: the wrapped core and the head initialise their own weights."""

    def _init_weights(self, module):
        pass


def get_config_dtype(config_dict: Dict[str, Any]) -> Optional[Union[str, torch.dtype]]:
    return config_dict.get("dtype", config_dict.get("torch_dtype"))


# Bookkeeping of 4.48 to 4.5x saying the attention was already chosen; stored as True, it stops the choice on reload.
_RUNTIME_FIELDS = ("_attn_implementation_autoset",)


def stored_config_dict(config_dict: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in config_dict.items() if k not in _RUNTIME_FIELDS}


def init_core_module(core: PreTrainedModel, module: nn.Module) -> None:
    with torch.no_grad():
        core._init_weights(module)


def no_split_modules(core: PreTrainedModel) -> List[str]:
    return list(getattr(core, "_no_split_modules", None) or [])


def resolve_file(path_or_repo_id: str, filename: str, **hub_kwargs: Any) -> Optional[str]:
    from transformers.utils import cached_file

    return cached_file(
        path_or_repo_id, filename,
        _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )
