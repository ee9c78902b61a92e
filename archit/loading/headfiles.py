"""A head saved alone (``ModelWithHeads.saveHead``): ``head_config.json`` says which task and head config it is and
which body it fits; ``head.safetensors`` holds the head's own tensors (a tied output matrix is the body's and is not
stored). The keys are the head module's own, archit's and never converted, so head files load on every transformers
release. Saved through ``DirectoryCommit`` (both files change together, crash-consistently) and read through
``read_consistently``, as checkpoints are."""
import json
import os
from pathlib import Path
from typing import Any, Dict, Tuple, Union

from torch import Tensor

from .. import __version__ as archit_version
from .. import _compat as compat
from .commits import DirectoryCommit, read_consistently, resolve_local
from .errors import CheckpointError
from .files import HEAD_CONFIG_NAME, HEAD_WEIGHTS_NAME, open_safetensors, read_json_file
from .writing import WeightWriter

__all__ = ["save_head_files", "read_head_files", "HEAD_CONFIG_NAME", "HEAD_WEIGHTS_NAME"]


def save_head_files(directory: Union[str, os.PathLike], description: Dict[str, Any], tensors: Dict[str, Tensor]) -> None:
    """Write a head's description (task, head config, body it fits; the versions are added) and tensors."""
    directory = Path(directory)
    if directory.is_file():
        raise ValueError(f"saveHead needs a directory, but '{directory}' is a file.")
    description = {**description, "transformers_version": str(compat.TRANSFORMERS_VERSION),
                   "archit_version": archit_version}
    with DirectoryCommit(directory) as commit, WeightWriter(commit) as writer:
        writer.safetensors(HEAD_WEIGHTS_NAME, {key: tensor.detach().contiguous() for key, tensor in tensors.items()},
                           {"format": "pt"})
        commit.write_text(HEAD_CONFIG_NAME, json.dumps(description, indent=2, sort_keys=True) + "\n")


def read_head_files(directory: Union[str, os.PathLike]) -> Tuple[Dict[str, Any], Dict[str, Tensor]]:
    """A saved head's description and tensors."""
    directory = Path(directory)
    if not directory.is_dir():
        raise OSError(f"'{directory}' is not a saved head: no such folder (saveHead writes {HEAD_CONFIG_NAME} and "
                      f"{HEAD_WEIGHTS_NAME} into one).")
    return read_consistently(str(directory), lambda: _read_head_files(str(directory)))


def _read_head_files(directory: str) -> Tuple[Dict[str, Any], Dict[str, Tensor]]:
    config_path, weights_path = (_head_file(directory, name) for name in (HEAD_CONFIG_NAME, HEAD_WEIGHTS_NAME))
    description = read_json_file(config_path)
    if not isinstance(description, dict):
        raise CheckpointError(config_path, f"holds a JSON {type(description).__name__}, not an object")
    with open_safetensors(weights_path) as handle:
        return description, {key: handle.get_tensor(key) for key in handle.keys()}


def _head_file(directory: str, name: str) -> str:
    path = resolve_local(directory, name)
    if path is None:
        raise OSError(f"'{directory}' is not a saved head: {name} is missing (saveHead writes {HEAD_CONFIG_NAME} and "
                      f"{HEAD_WEIGHTS_NAME}).")
    return path
