"""Helpers that are the same on every transformers release from 4.36 to 5.x, so they are written once here and not
per era. Most use public names; these private ones have kept their meaning in every era so far:
``PreTrainedModel._init_weights`` (a model's own initialisation of one module), ``PreTrainedModel._no_split_modules``
(modules a device map must keep whole) and ``cached_file``'s ``_raise_exceptions_for_missing_entries`` /
``_raise_exceptions_for_connection_errors`` arguments (answer ``None`` for a missing file instead of raising).
When one of them changes in a release, its helper moves into the era modules and into the ``Backend`` protocol.
"""
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, TypeVar, Union

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.utils import cached_file
from transformers.utils import logging as transformers_logging

T = TypeVar("T")


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


@dataclass
class ConversionUnit:
    """Checkpoint tensors that become tensors of a transformers model together: one tensor under another name, or
    several (per-expert matrices) merged into one fused tensor by an era's conversion rules."""
    name: str
    """The model key it produces (the first one, for rules that produce several), in that model's key space."""
    sources: List[str]
    """The checkpoint keys it reads."""
    convert: Callable[[], Dict[str, Tensor]]
    """Reads the sources and returns ``{model key: tensor}``; called once, when the tensors are assigned."""
    converted: bool
    """Whether an era's conversion rule (or a ``key_mapping``) changed a name or a tensor."""


def first_match_renaming(key_mapping: Optional[Mapping[str, str]]) -> Callable[[str], str]:
    """A key renaming by ``{regex: replacement}``, the first pattern that matches winning: what ``from_pretrained``'s
    ``key_mapping=`` does on 4.50-4.57 (4.36-4.49 have no such argument; archit gives them the same meaning)."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in (key_mapping or {}).items()]

    def rename(key: str) -> str:
        for pattern, replacement in compiled:
            renamed, count = pattern.subn(replacement, key)
            if count:
                return renamed
        return key
    return rename


def renaming_units(keys: Sequence[str], get_tensor: Callable[[str], Tensor],
                   rename: Callable[[str], str]) -> List[ConversionUnit]:
    """One unit per checkpoint key, under its renamed key: an era whose conversions are renamings only."""
    units = []
    for key in keys:
        name = rename(key)
        units.append(ConversionUnit(name, [key], lambda key=key, name=name: {name: get_tensor(key)}, name != key))
    return units


# Loads and saves below these sizes finish too fast for a progress bar to help.
PROGRESS_MIN_TENSORS = 2000
PROGRESS_MIN_BYTES = 2 * 2**30


def progress(items: Iterable[T], total: int, description: str, tensors: int, nbytes: int) -> Iterator[T]:
    """``items`` (``total`` of them), with transformers' own progress bar when they carry many or large tensors
    (``tensors`` tensors of ``nbytes`` bytes in all): the bar is off when transformers' progress bars are disabled
    (``transformers.utils.logging.disable_progress_bar()``), and, being a ``tqdm`` with ``disable=None``, when its
    output is not a terminal (the logs of batch jobs)."""
    big = tensors >= PROGRESS_MIN_TENSORS or nbytes >= PROGRESS_MIN_BYTES
    return iter(transformers_logging.tqdm(items, total=total, desc=description, disable=None if big else True))
