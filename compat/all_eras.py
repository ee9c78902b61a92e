"""Helpers that are the same on every transformers release from 4.36 to 5.x, so they are written once here and not
per era. Most use public names; these private ones have kept their meaning in every era so far:
``PreTrainedModel._init_weights`` (a model's own initialisation of one module), ``PreTrainedModel._no_split_modules``
(modules a device map must keep whole) and ``cached_file``'s ``_raise_exceptions_for_missing_entries`` /
``_raise_exceptions_for_connection_errors`` arguments (answer ``None`` for a missing file instead of raising).
When one of them changes in a release, its helper moves into the era modules and into the ``Backend`` protocol.
"""
from typing import Any, Dict, List, Optional, Union

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import cached_file


class WrapperWithoutOwnWeights(PreTrainedModel):
    """Base of the era ``PreTrainedWrapper`` classes: the wrapped core and the head initialise their own weights."""

    def _init_weights(self, module):
        pass


def get_config_dtype(config_dict: Dict[str, Any]) -> Optional[Union[str, torch.dtype]]:
    """The weights' dtype recorded in a ``config.json`` dictionary (``dtype`` from 4.56, ``torch_dtype`` before)."""
    return config_dict.get("dtype", config_dict.get("torch_dtype"))


# Bookkeeping of 4.48 to 4.5x saying the attention was already chosen; stored as True, it stops the choice on reload.
_RUNTIME_FIELDS = ("_attn_implementation_autoset",)


def stored_config_dict(config_dict: Dict[str, Any]) -> Dict[str, Any]:
    """A config dictionary without the runtime bookkeeping some releases keep in configs; applied when archit writes a
    base config and when it reads one."""
    return {k: v for k, v in config_dict.items() if k not in _RUNTIME_FIELDS}


def init_core_module(core: PreTrainedModel, module: nn.Module) -> None:
    """Initialise ``module`` (part of ``core``) the way ``core``'s class initialises fresh weights."""
    with torch.no_grad():
        core._init_weights(module)


def no_split_modules(core: PreTrainedModel) -> List[str]:
    """Class names of ``core``'s modules that device maps must keep on one device."""
    return list(getattr(core, "_no_split_modules", None) or [])


def resolve_file(path_or_repo_id: str, filename: str, **hub_kwargs: Any) -> Optional[str]:
    """Local path of ``filename`` in a local folder or hub repository, or ``None`` when the file is absent.
    Raises ``OSError`` when the folder or repository itself cannot be found."""
    return cached_file(
        path_or_repo_id, filename,
        _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )
