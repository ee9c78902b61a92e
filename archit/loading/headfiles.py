"""A head saved alone (``ModelWithHeads.saveHead``): ``head_config.json`` says which task and head config it is and
which body it fits; ``head.safetensors`` holds the head's own tensors (a tied output matrix is the body's and is not
stored). The keys are the head module's own, archit's and never converted, so head files load on every transformers
release."""
import json
import os
from pathlib import Path
from typing import Any, Dict, Tuple, Union

from safetensors.torch import load_file, save_file
from torch import Tensor

from .. import __version__ as archit_version
from .. import _compat as compat

HEAD_CONFIG_NAME = "head_config.json"
HEAD_WEIGHTS_NAME = "head.safetensors"

__all__ = ["save_head_files", "read_head_files", "HEAD_CONFIG_NAME", "HEAD_WEIGHTS_NAME"]


def save_head_files(directory: Union[str, os.PathLike], description: Dict[str, Any], tensors: Dict[str, Tensor]) -> None:
    """Write a head's description (task, head config, body it fits; the versions are added) and tensors."""
    directory = Path(directory)
    if directory.is_file():
        raise ValueError(f"saveHead needs a directory, but '{directory}' is a file.")
    directory.mkdir(parents=True, exist_ok=True)
    description = {**description, "transformers_version": str(compat.TRANSFORMERS_VERSION),
                   "archit_version": archit_version}
    (directory / HEAD_CONFIG_NAME).write_text(json.dumps(description, indent=2, sort_keys=True) + "\n",
                                              encoding="utf-8")
    save_file({key: tensor.detach().contiguous() for key, tensor in tensors.items()},
              str(directory / HEAD_WEIGHTS_NAME), metadata={"format": "pt"})


def read_head_files(directory: Union[str, os.PathLike]) -> Tuple[Dict[str, Any], Dict[str, Tensor]]:
    """A saved head's description and tensors."""
    directory = Path(directory)
    config_path, weights_path = directory / HEAD_CONFIG_NAME, directory / HEAD_WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise OSError(f"'{directory}' is not a saved head: {path.name} is missing (saveHead writes "
                          f"{HEAD_CONFIG_NAME} and {HEAD_WEIGHTS_NAME}).")
    try:
        description = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path} is not valid JSON: {error}") from error
    return description, load_file(str(weights_path))
