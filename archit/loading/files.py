"""Finding and reading a checkpoint's files: ``config.json`` and the weights (safetensors or ``.bin``, sharded or not),
in a local folder or a hub repository."""
import json
import math
import os
import re
import struct
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from safetensors import safe_open
from torch import Tensor

from .. import _compat as compat
from .commits import open_settled, resolve_local, settled_path
from .errors import CheckpointError
from .pages import FilePages

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
HEAD_CONFIG_NAME = "head_config.json"
HEAD_WEIGHTS_NAME = "head.safetensors"
"""The files of a head saved alone (``ModelWithHeads.saveHead``; ``headfiles.py``)."""

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
        return resolve_local(str(folder), filename)
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
    config = read_json_file(path)
    if not isinstance(config, dict):
        raise CheckpointError(path, f"holds a JSON {type(config).__name__}, not an object of config fields")
    return config


def read_json_file(path: str) -> Any:
    """The JSON value in ``path``; ``CheckpointError`` naming the file when it cannot be read or is not JSON (duplicate
    keys in an object included: JSON readers silently keep one of them)."""
    try:
        text = open_settled(path, lambda p: Path(p).read_bytes()).decode("utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError(path, f"is not UTF-8 text: {error}") from error
    except OSError as error:
        raise CheckpointError(path, f"cannot be read: {error.strerror or error}") from error
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _without_duplicate_keys(path, pairs))
    except json.JSONDecodeError as error:
        raise CheckpointError(path, f"is not valid JSON: {error}" if text.strip() else "is empty") from error
    except RecursionError as error:
        raise CheckpointError(path, "nests JSON too deeply") from error


def _without_duplicate_keys(path: str, pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        duplicate = next(key for i, (key, _) in enumerate(pairs) if any(key == k for k, _ in pairs[:i]))
        raise CheckpointError(path, "names this key twice in one object", key=duplicate)
    return result


def find_weight_files(checkpoint: str, use_safetensors: Optional[bool] = None, variant: Optional[str] = None,
                      **hub_kwargs: Any) -> List[str]:
    """Paths of the checkpoint's weight files: safetensors first (unless ``use_safetensors=False``), then ``.bin``;
    those of ``variant`` (``model.fp16.safetensors``, ...) when one is given, else those without a variant."""
    return find_weights(checkpoint, use_safetensors, variant, **hub_kwargs).paths


@dataclass(frozen=True)
class WeightFiles:
    """A checkpoint's weight files (resolved paths) and the index that names them (``None`` for a single file)."""
    paths: List[str]
    index: Optional[str]


def find_weights(checkpoint: str, use_safetensors: Optional[bool] = None, variant: Optional[str] = None,
                 **hub_kwargs: Any) -> WeightFiles:
    """``find_weight_files``, with the index it read."""
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
            return WeightFiles([path], None)
        paths = []
        for shard, key in shards_of_index(path).items():
            shard_path = resolve_file(checkpoint, shard, **hub_kwargs)
            if shard_path is None:
                raise CheckpointError(path, f"names shard {shard}, which is missing", key=f"weight_map.{key}")
            paths.append(shard_path)
        return WeightFiles(paths, path)
    raise OSError(f"Checkpoint '{checkpoint}' has no weights: none of {', '.join(candidates)} found."
                  + _other_variants(checkpoint, variant, hub_kwargs.get("subfolder") or ""))


def shards_of_index(path: str) -> Dict[str, str]:
    """The shard file names an index names, each with the first key it assigns to it, sorted by name."""
    index = read_json_file(path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointError(path, "is not a weights index: it needs an object 'weight_map' (tensor -> shard file)",
                              key="weight_map")
    shards: Dict[str, str] = {}
    for key, shard in weight_map.items():
        if not isinstance(shard, str) or not shard or shard != os.path.basename(shard) or shard in (".", ".."):
            raise CheckpointError(path, f"names {shard!r} as a shard: not a file name in the checkpoint folder",
                                  key=f"weight_map.{key}")
        shards.setdefault(shard, key)
    return dict(sorted(shards.items()))


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


def is_safetensors(path: str) -> bool:
    """Whether the weight file at ``path`` is in the safetensors format (else it is a ``.bin``), by the name it has in
    the checkpoint: a name resolved through a save's journal gives its temporary ``.part`` file, whose own name says
    nothing of the format."""
    return settled_path(path).endswith(".safetensors")


def checkpoint_name(path: str) -> str:
    """The file name ``path`` has in its checkpoint folder (a temporary file's final name)."""
    return os.path.basename(settled_path(path))


def load_bin(path: str) -> Dict[str, Tensor]:
    """A ``.bin`` state dict, read with ``torch.load(weights_only=True)``: tensors only, never arbitrary code."""
    try:
        return open_settled(path, lambda p: _torch_load(p, "cpu"))
    except Exception as error:
        raise CheckpointError(path, f"cannot be read with torch.load(weights_only=True), which refuses anything but "
                                    f"tensors (convert the file to safetensors if you trust it): {error}") from error


class CheckpointReader:
    """Keys and tensors of a set of weight files; safetensors tensors are read from the file on request."""

    reads_data = True

    def __init__(self, paths: List[str]):
        self._stack = ExitStack()
        self._location: Dict[str, Any] = {}  # key -> open safetensors file, or the loaded .bin dict
        self._files: Dict[str, str] = {}  # key -> the file holding it
        self._pages: Dict[str, FilePages] = {}  # safetensors file -> its mapped pages
        try:
            for path in paths:
                source: Any = self._stack.enter_context(open_safetensors(path)) if is_safetensors(path) \
                    else load_bin(path)
                if is_safetensors(path):
                    self._pages[path] = FilePages(path)
                for key in source.keys():
                    _check_once(key, path, self._files)
                    self._location[key] = source
        except BaseException:
            self._stack.close()
            raise

    def keys(self) -> List[str]:
        return list(self._location)

    def get(self, key: str) -> Tensor:
        source = self._location[key]
        return source[key] if isinstance(source, dict) else source.get_tensor(key)

    def release(self, key: str) -> None:
        """Give back the memory of the file pages that tensor ``key`` (read, and not kept as a view of the file) made
        resident: ``pages.FilePages.release``."""
        source = self._location[key]
        if not isinstance(source, dict):
            self._pages[self._files[key]].release(source.get_tensor(key))

    def path_of(self, key: str) -> str:
        """The weight file holding ``key``."""
        return self._files[key]

    def header(self, key: str) -> "TensorHeader":
        """What the file says of tensor ``key`` (its data is not read)."""
        source = self._location[key]
        if isinstance(source, dict):
            tensor = source[key]
            return TensorHeader(tuple(tensor.shape), dtype_name(tensor.dtype), self._files[key])
        return _safetensors_header(source, key, self._files[key])

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self._location.clear()


# The one table of dtypes: safetensors' name of each (in a header, ``get_dtype()``) -> (torch's name of it, bytes per
# element), in safetensors' own order of them (its ``Dtype`` enum, by increasing alignment: a file holds the tensors of
# the last first; the writer follows it). A dtype not named here may be one of a newer safetensors release: safetensors
# decides about it.
SAFETENSORS_DTYPES: Dict[str, Tuple[str, int]] = {
    "BOOL": ("bool", 1), "U8": ("uint8", 1), "I8": ("int8", 1), "F8_E5M2": ("float8_e5m2", 1),
    "F8_E4M3": ("float8_e4m3fn", 1), "I16": ("int16", 2), "U16": ("uint16", 2), "F16": ("float16", 2),
    "BF16": ("bfloat16", 2), "I32": ("int32", 4), "U32": ("uint32", 4), "F32": ("float32", 4), "C64": ("complex64", 8),
    "F64": ("float64", 8), "I64": ("int64", 8), "U64": ("uint64", 8),
}


def dtype_name(dtype: torch.dtype) -> str:
    """torch's name of a dtype, without its module: ``"bfloat16"``."""
    return str(dtype).replace("torch.", "")


def named_dtype(name: str) -> Optional[torch.dtype]:
    """The torch dtype that ``name`` (``"bfloat16"`` or ``"torch.bfloat16"``) names; ``None`` when the installed torch
    has none of that name."""
    found = getattr(torch, name.replace("torch.", ""), None)
    return found if isinstance(found, torch.dtype) else None


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
    files: Dict[str, str] = {}
    for path in paths:
        if is_safetensors(path):
            with open_safetensors(path) as handle:
                found = {key: _safetensors_header(handle, key, path) for key in handle.keys()}
        else:
            try:
                loaded = open_settled(path, lambda p: _torch_load(p, "meta"))
            except Exception as error:
                raise CheckpointError(path, f"cannot be read with torch.load(weights_only=True): {error}") from error
            found = {key: TensorHeader(tuple(tensor.shape), dtype_name(tensor.dtype), path)
                     for key, tensor in loaded.items()}
        for key, header in found.items():
            _check_once(key, path, files)
            headers[key] = header
    return headers


def dtype_kind(dtype: torch.dtype) -> str:
    """What a dtype holds: ``"float"``, ``"complex"``, ``"bool"`` or ``"integer"``. Loading casts between dtypes of
    one kind (float32 into bfloat16, as transformers does), never across kinds."""
    if dtype.is_floating_point:
        return "float"
    if dtype.is_complex:
        return "complex"
    return "bool" if dtype == torch.bool else "integer"


def wrong_dtype_kind(stored: torch.dtype, target: torch.dtype, path: str, key: str,
                     model_key: str) -> Optional[CheckpointError]:
    """The ``CheckpointError`` naming the file and tensor when a stored tensor's dtype is of another kind than the
    tensor of the model it would fill (an integer tensor for a float weight, or the reverse): what a flipped dtype in a
    safetensors header gives, whose bytes would load as garbage. ``None`` when the kinds agree."""
    if dtype_kind(stored) == dtype_kind(target):
        return None
    return CheckpointError(path, f"holds it as {dtype_name(stored)}, but {model_key} is a {dtype_name(target)} "
                                    f"tensor: an {dtype_kind(stored)} tensor cannot fill a {dtype_kind(target)} one (a "
                                    f"damaged header, or a checkpoint of another model)", key=key)


def _safetensors_header(handle: Any, key: str, path: str) -> TensorHeader:
    """Shape and dtype of tensor ``key`` of an open safetensors file, from its header."""
    tensor = handle.get_slice(key)
    raw = tensor.get_dtype()
    return TensorHeader(tuple(tensor.get_shape()), SAFETENSORS_DTYPES[raw][0] if raw in SAFETENSORS_DTYPES else raw.lower(), path)


def _check_once(key: str, path: str, files: Dict[str, str]) -> None:
    """Record that ``path`` holds tensor ``key``; a key in two weight files of one checkpoint is an error (which one
    would be loaded is arbitrary)."""
    if key in files:
        raise CheckpointError(path, f"holds a tensor that {files[key]} holds too", key=key)
    files[key] = path


_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


def check_safetensors_header(path: str) -> Dict[str, Any]:
    """
    The header of a safetensors file (8-byte little-endian length, then a JSON object: tensor -> dtype, shape and
    ``data_offsets`` into the data after the header; ``__metadata__``), checked against the file before safetensors
    maps it: a ``CheckpointError`` naming the file and tensor says what is wrong (empty or truncated file, header
    length beyond the file, header not JSON, offsets beyond the file, a size that does not match dtype and shape).
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise CheckpointError(path, "is empty" if not prefix else
                                      f"is truncated: {size} bytes, less than a safetensors header's 8-byte length")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(size - 8, _MAX_HEADER_BYTES):
                raise CheckpointError(path, f"is truncated or damaged: its header length says {length} bytes, but "
                                            f"the file has {size - 8} after the length")
            raw = handle.read(length)
    except OSError as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(path, f"cannot be read: {error.strerror or error}") from error
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=lambda pairs: _without_duplicate_keys(path, pairs))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(path, f"is damaged: its header is not JSON ({error})") from error
    if not isinstance(header, dict):
        raise CheckpointError(path, f"is damaged: its header is a JSON {type(header).__name__}, not an object")
    data_size = size - 8 - length
    for key, entry in header.items():
        if key == "__metadata__":
            if not (isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())):
                raise CheckpointError(path, "is damaged: __metadata__ must map names to strings", key=key)
            continue
        _check_tensor_entry(path, key, entry, data_size)
    return header


def _check_tensor_entry(path: str, key: str, entry: Any, data_size: int) -> None:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise CheckpointError(path, f"is damaged: a tensor's header entry must hold exactly dtype, shape and "
                                    f"data_offsets; got {entry!r:.200}", key=key)
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str):
        raise CheckpointError(path, f"is damaged: dtype {dtype!r} is not a name", key=key)
    if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
        raise CheckpointError(path, f"is damaged: shape {shape!r} is not a list of sizes", key=key)
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise CheckpointError(path, f"is damaged: data_offsets {offsets!r} are not [begin, end]", key=key)
    if offsets[1] > data_size:
        raise CheckpointError(path, f"is truncated or damaged: the tensor's data ends at byte {offsets[1]} of the data, "
                                    f"but the file holds {data_size} bytes of data", key=key)
    if dtype in SAFETENSORS_DTYPES and offsets[1] - offsets[0] != math.prod(shape) * SAFETENSORS_DTYPES[dtype][1]:
        raise CheckpointError(path, f"is damaged: {dtype} of shape {shape} takes "
                                    f"{math.prod(shape) * SAFETENSORS_DTYPES[dtype][1]} bytes, but its data_offsets "
                                    f"span {offsets[1] - offsets[0]}", key=key)


def open_safetensors(path: str) -> Any:
    """``safe_open(path)`` (a context manager) after ``check_safetensors_header``: errors are ``CheckpointError``
    naming the file, and the tensor where there is one."""
    header = open_settled(path, check_safetensors_header)
    try:
        return open_settled(path, lambda p: safe_open(p, framework="pt", device="cpu"))
    except Exception as error:
        unknown = next((k for k, e in header.items() if k != "__metadata__" and e["dtype"] not in SAFETENSORS_DTYPES), None)
        if unknown is not None:
            raise CheckpointError(path, f"is damaged or too new: dtype {header[unknown]['dtype']!r} is unknown to this "
                                        f"safetensors ({error})", key=unknown) from error
        raise CheckpointError(path, f"safetensors cannot read it: {error}") from error


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

    def path_of(self, key: str) -> str:
        return self.headers[key].path

    def header(self, key: str) -> TensorHeader:
        return self.headers[key]

    def __enter__(self) -> "HeaderReader":
        return self

    def __exit__(self, *exc) -> None:
        pass


def read_tensors(paths: List[str]) -> Iterator[Tuple[str, Tensor]]:
    """Every ``(key, tensor)`` of the given weight files."""
    with CheckpointReader(paths) as reader:
        for key in reader.keys():
            yield key, reader.get(key)
