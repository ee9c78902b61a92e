"""Small helpers of the published ArchIt API: parameter counts, reading a checkpoint's tensors, dataclasses from dicts."""
import os
from typing import Any, Dict, Tuple

from torch import Tensor
from torch.nn import Module

from .loading.commits import read_consistently
from .loading.configs import dataclass_from_dict as dataclass_from_dict
from .loading.files import find_weight_files, read_tensors

__all__ = ["torchPrint", "parameterCount", "parameterCountBaseVsHead", "checkpointToStateDict", "dataclass_from_dict",
           # What ``from archit.util import *`` also gave with the published ArchIt (no __all__).
           "Dict", "Enum", "Module", "Path", "PreTrainedModel", "Tensor", "Tuple", "WEIGHTS_NAME", "cached_file", "fields",
           "load_state_dict"]

# Names the published ArchIt's util module had by importing them.
from dataclasses import fields as fields  # noqa: E402
from enum import Enum as Enum  # noqa: E402
from pathlib import Path as Path  # noqa: E402

from transformers import PreTrainedModel as PreTrainedModel  # noqa: E402
from transformers.modeling_utils import load_state_dict as load_state_dict  # noqa: E402
from transformers.utils import WEIGHTS_NAME as WEIGHTS_NAME  # noqa: E402
from transformers.utils import cached_file as cached_file  # noqa: E402


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
    ``.bin`` files are read with ``torch.load(weights_only=True)``. A local folder is read as one checkpoint even while
    another process saves into it.
    """
    folder = os.path.join(str(checkpoint), hub_kwargs.get("subfolder") or "")
    return read_consistently(folder, lambda: dict(read_tensors(find_weight_files(str(checkpoint), **hub_kwargs))))
