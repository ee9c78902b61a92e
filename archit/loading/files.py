"""Finding and reading a checkpoint's files: ``config.json`` and the weights (safetensors or ``.bin``, sharded or not),
in a local folder or a hub repository."""
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from safetensors import safe_open
from torch import Tensor

from .. import _compat as compat

CONFIG_NAME = "config.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"

HUB_KWARGS = ("cache_dir", "revision", "local_files_only", "token", "subfolder", "force_download", "proxies")


def resolve_file(checkpoint: str, filename: str, **hub_kwargs: Any) -> Optional[str]:
    """Local path of ``filename`` in the checkpoint (downloading it from the hub if needed); ``None`` if absent."""
    folder = Path(checkpoint) / hub_kwargs.get("subfolder", "")
    if Path(checkpoint).is_dir():
        return str(folder / filename) if (folder / filename).is_file() else None
    try:
        return compat.resolve_file(checkpoint, filename, **{k: v for k, v in hub_kwargs.items() if v is not None})
    except (OSError, ValueError) as error:  # ValueError: not even a valid repository id.
        raise OSError(f"Checkpoint '{checkpoint}' is not a local folder, nor a model id that the hub could serve: "
                      f"{error}") from error


def read_config_dict(checkpoint: str, **hub_kwargs: Any) -> Dict[str, Any]:
    """The checkpoint's ``config.json`` as a dictionary."""
    path = resolve_file(checkpoint, CONFIG_NAME, **hub_kwargs)
    if path is None:
        where = "local folder" if Path(checkpoint).is_dir() else "model id (not a local folder; hub offline or no such repository)"
        raise OSError(f"Checkpoint '{checkpoint}' has no {CONFIG_NAME}: "
                      f"it does not exist or is not a model checkpoint ({where}).")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def find_weight_files(checkpoint: str, use_safetensors: Optional[bool] = None, **hub_kwargs: Any) -> List[str]:
    """Paths of the checkpoint's weight files: safetensors first (unless ``use_safetensors=False``), then ``.bin``."""
    safetensors_names = [SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME]
    bin_names = [WEIGHTS_INDEX_NAME, WEIGHTS_NAME]
    candidates = (safetensors_names if use_safetensors else
                  bin_names + safetensors_names if use_safetensors is False else safetensors_names + bin_names)
    for name in candidates:
        path = resolve_file(checkpoint, name, **hub_kwargs)
        if path is None:
            continue
        if not name.endswith(".index.json"):
            return [path]
        with open(path, encoding="utf-8") as handle:
            shards = sorted(set(json.load(handle)["weight_map"].values()))
        paths = []
        for shard in shards:
            shard_path = resolve_file(checkpoint, shard, **hub_kwargs)
            if shard_path is None:
                raise OSError(f"Checkpoint '{checkpoint}': {name} lists shard {shard}, which is missing.")
            paths.append(shard_path)
        return paths
    raise OSError(f"Checkpoint '{checkpoint}' has no weights: none of {', '.join(candidates)} found.")


def load_bin(path: str) -> Dict[str, Tensor]:
    """A ``.bin`` state dict, read with ``torch.load(weights_only=True)``: tensors only, never arbitrary code."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:  # Files in the legacy (pre-zip) format cannot be memory-mapped.
            if "mmap" not in str(error):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise OSError(f"Could not read {path} with torch.load(weights_only=True), which refuses anything but "
                      f"tensors (convert the file to safetensors if you trust it): {error}") from error


class CheckpointReader:
    """Keys and tensors of a set of weight files; safetensors tensors are read from the file on request."""

    def __init__(self, paths: List[str]):
        self.paths = paths
        self._stack = ExitStack()
        self._location: Dict[str, Any] = {}  # key -> open safetensors file, or the loaded .bin dict
        for path in paths:
            if path.endswith(".safetensors"):
                handle = self._stack.enter_context(safe_open(path, framework="pt", device="cpu"))
                self._location.update(dict.fromkeys(handle.keys(), handle))
            else:
                state_dict = load_bin(path)
                self._location.update(dict.fromkeys(state_dict.keys(), state_dict))

    def keys(self) -> List[str]:
        return list(self._location)

    def get(self, key: str) -> Tensor:
        source = self._location[key]
        return source[key] if isinstance(source, dict) else source.get_tensor(key)

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self._location.clear()


def read_tensors(paths: List[str]) -> Iterator[Tuple[str, Tensor]]:
    """Every ``(key, tensor)`` of the given weight files."""
    with CheckpointReader(paths) as reader:
        for key in reader.keys():
            yield key, reader.get(key)
