"""Finding and reading a checkpoint's files: ``config.json`` and the weights (safetensors or ``.bin``, sharded or not),
in a local folder or a hub repository."""
import json
import math
import re
from contextlib import ExitStack
from dataclasses import dataclass
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

# Weight files as transformers names them, with the variant (``None`` for none) as the named group "variant":
# model[.V].safetensors, model[.V]-00001-of-00002.safetensors, model.safetensors.index[.V].json, the same for .bin.
_WEIGHT_FILE = re.compile(r"^(?:model|pytorch_model)(?:\.(?P<variant>.+?))?(?:-\d{5}-of-\d{5})?\.(?:safetensors|bin)$")
_INDEX_FILE = re.compile(r"^(?:model\.safetensors|pytorch_model\.bin)\.index(?:\.(?P<variant>.+))?\.json$")


def add_variant(name: str, variant: Optional[str] = None) -> str:
    """The name of a weights file of a variant, as transformers writes it (its ``_add_variant``):
    ``model.safetensors`` -> ``model.fp16.safetensors``, ``model.safetensors.index.json`` ->
    ``model.safetensors.index.fp16.json``, ``pytorch_model.bin`` -> ``pytorch_model.fp16.bin``."""
    if variant is None:
        return name
    stem, extension = name.rsplit(".", 1)
    return f"{stem}.{variant}.{extension}"


def check_variant(variant: Optional[str]) -> None:
    if variant is not None and (not isinstance(variant, str) or not variant or re.search(r"[/\\]", variant)):
        raise ValueError(f"variant must be a name such as 'fp16' (it goes into file names); got {variant!r}.")


def weight_file_variant(name: str) -> Tuple[bool, Optional[str]]:
    """``(True, variant)`` for the name of a weights file, shard or index (variant ``None`` for none);
    ``(False, None)`` for any other file."""
    match = _WEIGHT_FILE.match(name) or _INDEX_FILE.match(name)
    return (True, match.group("variant")) if match else (False, None)


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


def find_weight_files(checkpoint: str, use_safetensors: Optional[bool] = None, variant: Optional[str] = None,
                      **hub_kwargs: Any) -> List[str]:
    """Paths of the checkpoint's weight files: safetensors first (unless ``use_safetensors=False``), then ``.bin``;
    those of ``variant`` (``model.fp16.safetensors``, ...) when one is given, else those without a variant."""
    check_variant(variant)
    index_names = [add_variant(SAFE_WEIGHTS_INDEX_NAME, variant), add_variant(WEIGHTS_INDEX_NAME, variant)]
    safetensors_names = [index_names[0], add_variant(SAFE_WEIGHTS_NAME, variant)]
    bin_names = [index_names[1], add_variant(WEIGHTS_NAME, variant)]
    candidates = (safetensors_names if use_safetensors else
                  bin_names + safetensors_names if use_safetensors is False else safetensors_names + bin_names)
    for name in candidates:
        path = resolve_file(checkpoint, name, **hub_kwargs)
        if path is None:
            continue
        if name not in index_names:
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
    raise OSError(f"Checkpoint '{checkpoint}' has no weights: none of {', '.join(candidates)} found."
                  + _other_variants(checkpoint, variant, hub_kwargs.get("subfolder") or ""))


def _other_variants(checkpoint: str, variant: Optional[str], subfolder: str) -> str:
    """For the error above: the weight files of other variants that a local folder holds, and how to load them."""
    folder = Path(checkpoint) / subfolder
    if not folder.is_dir():
        return ""
    found: Dict[Optional[str], List[str]] = {}
    for path in sorted(folder.iterdir()):
        is_weights, its_variant = weight_file_variant(path.name)
        if is_weights and path.is_file() and its_variant != variant:
            found.setdefault(its_variant, []).append(path.name)
    if not found:
        return ""
    options = " or ".join(f"variant={v!r}" for v in found)
    return f" It holds {', '.join(name for names in found.values() for name in names)}: pass {options}."


def load_bin(path: str) -> Dict[str, Tensor]:
    """A ``.bin`` state dict, read with ``torch.load(weights_only=True)``: tensors only, never arbitrary code."""
    try:
        return _torch_load(path, "cpu")
    except Exception as error:
        raise OSError(f"Could not read {path} with torch.load(weights_only=True), which refuses anything but "
                      f"tensors (convert the file to safetensors if you trust it): {error}") from error


class CheckpointReader:
    """Keys and tensors of a set of weight files; safetensors tensors are read from the file on request."""

    reads_data = True

    def __init__(self, paths: List[str]):
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


# safetensors' dtype names (``get_dtype()``) as torch names them.
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32",
                       "U64": "uint64", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
                       "C64": "complex64"}


@dataclass(frozen=True)
class TensorHeader:
    """What a weight file's header says about one tensor."""
    shape: Tuple[int, ...]
    dtype: str
    """As torch names it: ``"float32"``, ``"bfloat16"``, ``"int64"``, ..."""
    path: str
    """The file that holds it."""

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_tensor_headers(paths: List[str]) -> Dict[str, TensorHeader]:
    """Shape and dtype of every tensor of the given weight files, from their headers alone, never a tensor's data:
    safetensors' header (``get_slice(key).get_shape()``), a ``.bin``'s pickle with its storages mapped onto the meta
    device (``torch.load(mmap=True, map_location="meta")``; a file in the legacy pre-zip format cannot be mapped and is
    read). Raises ``OSError`` naming the file that cannot be read."""
    headers: Dict[str, TensorHeader] = {}
    for path in paths:
        try:
            if path.endswith(".safetensors"):
                with safe_open(path, framework="pt", device="cpu") as handle:
                    for key in handle.keys():
                        tensor = handle.get_slice(key)
                        raw = tensor.get_dtype()
                        headers[key] = TensorHeader(tuple(tensor.get_shape()), _SAFETENSORS_DTYPES.get(raw, raw.lower()),
                                                    path)
            else:
                for key, tensor in _torch_load(path, "meta").items():
                    headers[key] = TensorHeader(tuple(tensor.shape), str(tensor.dtype).replace("torch.", ""), path)
        except Exception as error:
            raise OSError(f"Could not read the header of {path}: {error}") from error
    return headers


def _torch_load(path: str, map_location: str) -> Dict[str, Tensor]:
    """``torch.load(weights_only=True)``, memory-mapped where the file format allows it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except RuntimeError as error:  # Files in the legacy (pre-zip) format cannot be memory-mapped.
        if "mmap" not in str(error):
            raise
        return torch.load(path, map_location=map_location, weights_only=True)


class HeaderReader:
    """``CheckpointReader``'s keys from the weight files' headers (``read_tensor_headers``), for planning a load without
    reading a tensor: ``get`` refuses."""

    reads_data = False

    def __init__(self, paths: List[str]):
        self.headers = read_tensor_headers(paths)

    def keys(self) -> List[str]:
        return list(self.headers)

    def get(self, key: str) -> Tensor:
        raise RuntimeError(f"{key}: reading tensor data while planning a load, which reads headers only.")

    def __enter__(self) -> "HeaderReader":
        return self

    def __exit__(self, *exc) -> None:
        pass


def read_tensors(paths: List[str]) -> Iterator[Tuple[str, Tensor]]:
    """Every ``(key, tensor)`` of the given weight files."""
    with CheckpointReader(paths) as reader:
        for key in reader.keys():
            yield key, reader.get(key)
