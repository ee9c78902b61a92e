"""Small helpers of the published ArchIt API: parameter counts, reading a checkpoint's tensors, dataclasses from dicts."""
import typing
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any, Dict, Tuple

from torch import Tensor
from torch.nn import Module

__all__ = ["torchPrint", "parameterCount", "parameterCountBaseVsHead", "checkpointToStateDict", "dataclass_from_dict"]


def torchPrint(module: Module, scaffolding: str = ":", truncation_depth: int = 100) -> None:
    """Print a module tree indented with 4 spaces and scaffolding, cutting it off below ``truncation_depth`` levels."""
    default_indent = "  "
    kept, too_deep = [], False
    for line in repr(module).split("\n"):
        if line.startswith(default_indent * truncation_depth):
            if not too_deep:
                kept.append(default_indent * truncation_depth + "...")
            too_deep = True
        else:
            kept.append(line)
            too_deep = False
    print("\n".join(kept).replace(default_indent, scaffolding + "   "))


def parameterCount(model: Module) -> Tuple[int, int]:
    """``(trainable, total)`` number of parameters. Shared (tied) parameters count once."""
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def parameterCountBaseVsHead(model: Module) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """``((base trainable, base total), (rest trainable, rest total))`` where the base is ``model.base_model``."""
    base_trainable, base_total = parameterCount(model.base_model)
    all_trainable, all_total = parameterCount(model)
    return (base_trainable, base_total), (all_trainable - base_trainable, all_total - base_total)


def checkpointToStateDict(checkpoint: str, **hub_kwargs: Any) -> Dict[str, Tensor]:
    """
    All tensors of a checkpoint (local folder or hub id; safetensors or ``.bin``, sharded or not), keyed as in the file.
    ``.bin`` files are read with ``torch.load(weights_only=True)``.
    """
    from .loading.files import find_weight_files, read_tensors

    return dict(read_tensors(find_weight_files(checkpoint, **hub_kwargs)))


def dataclass_from_dict(cls: type, as_dict: Dict[str, Any]) -> Any:
    """
    Build dataclass ``cls`` from a dictionary, recursively for fields that are dataclasses or enums.
    Keys that are not fields of ``cls`` are passed to its constructor too (and fail there if it does not take them).
    """
    if not is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    kwargs = {}
    for name, value in as_dict.items():
        expected = hints.get(name) if name in known else None
        if isinstance(expected, type) and is_dataclass(expected) and isinstance(value, dict):
            value = dataclass_from_dict(expected, value)
        elif isinstance(expected, type) and issubclass(expected, Enum) and not isinstance(value, expected):
            value = _enum_member(expected, value)
        kwargs[name] = value
    return cls(**kwargs)


def _enum_member(enum_class: type, value: Any) -> Enum:
    try:
        return enum_class(value)
    except ValueError:
        return enum_class[value]  # Serialised by name.
