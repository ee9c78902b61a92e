"""``ModelWithHead.save_pretrained``: ``config.json`` plus weights, safetensors by default, sharded, tied tensors once;
crash-consistent (``commits.py``: the folder holds the old or the new checkpoint whenever the save dies); the
code files of a base model built from checkpoint code (``trust_remote_code=True``) saved with it."""
import json
import logging
import os
import re
import shutil
import struct
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Union

import safetensors.torch
import torch
from safetensors.torch import save_file
from torch import Tensor

from .. import _compat as compat
from .checkpointcode import save_code_of
from .commits import DirectoryCommit
from .files import (
    CONFIG_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    add_variant,
    check_variant,
    weight_file_variant,
)
from .keys import CORE_PATH

logger = logging.getLogger(__name__)

_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_ACCEPTED_AND_UNUSED = ("push_to_hub", "token", "save_peft_format", "save_function")
# safetensors' names of the dtypes ``_safetensors_chunks`` writes, in safetensors' order of them (its ``Dtype`` enum,
# increasing alignment): it stores tensors by dtype, the last of this list first, then by name. Only those the installed
# safetensors writes too (its ``_TYPES``; older releases lack float8 and unsigned 16-64 bit): the others go through
# save_file, which raises for them or writes them as it does.
_SAFETENSORS_DTYPES = {dtype: name for dtype, name in (
    (torch.bool, "BOOL"), (torch.uint8, "U8"), (torch.int8, "I8"), (getattr(torch, "float8_e5m2", None), "F8_E5M2"),
    (getattr(torch, "float8_e4m3fn", None), "F8_E4M3"), (torch.int16, "I16"), (getattr(torch, "uint16", None), "U16"),
    (torch.float16, "F16"), (torch.bfloat16, "BF16"), (torch.int32, "I32"), (getattr(torch, "uint32", None), "U32"),
    (torch.float32, "F32"), (torch.float64, "F64"), (torch.int64, "I64"), (getattr(torch, "uint64", None), "U64"),
) if dtype is not None and getattr(safetensors.torch, "_TYPES", {}).get(name) == dtype}
_SAFETENSORS_RANK = {dtype: rank for rank, dtype in enumerate(_SAFETENSORS_DTYPES)}


def save_model_with_head(model, save_directory: Union[str, os.PathLike], max_shard_size: Union[int, str] = "5GB",
                         safe_serialization: bool = True, is_main_process: bool = True,
                         state_dict: Optional[Dict[str, Tensor]] = None, variant: Optional[str] = None,
                         **kwargs: Any) -> None:
    """``variant="fp16"`` names the files as transformers does (``model.fp16.safetensors``, shards
    ``model.fp16-00001-of-00002.safetensors`` with ``model.safetensors.index.fp16.json``, ``pytorch_model.fp16.bin``),
    for ``from_pretrained(..., variant="fp16")``; only earlier files of the same variant are replaced."""
    if os.path.isfile(save_directory):
        raise ValueError(f"save_pretrained needs a directory, but '{save_directory}' is a file.")
    for name in kwargs:
        if name not in _ACCEPTED_AND_UNUSED:
            raise TypeError(f"save_pretrained() got an unexpected keyword argument '{name}'.")
        if name == "push_to_hub" and kwargs[name]:
            raise NotImplementedError("archit does not push to the hub: save, then use huggingface_hub's upload_folder.")
    check_variant(variant)
    if not is_main_process:
        return
    tensors = _without_shared_duplicates(model.state_dict() if state_dict is None else state_dict)
    tensors = checkpoint_layout(model, tensors)
    shards = _shard(tensors, parse_size(max_shard_size))
    weights_name, index_name = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME) if safe_serialization \
        else (WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
    weights_name, index_name = add_variant(weights_name, variant), add_variant(index_name, variant)
    stem, extension = weights_name.rsplit(".", 1)
    names = [weights_name] if len(shards) == 1 else \
        [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.{extension}" for i in range(len(shards))]
    nbytes = sum(_nbytes(t) for t in tensors.values())

    with DirectoryCommit(save_directory) as commit:
        for name, shard in compat.progress(zip(names, shards), len(shards), "Writing model shards", len(tensors),
                                           nbytes):
            chunks = _safetensors_chunks(shard, {"format": "pt"}) if safe_serialization else None
            if chunks is not None:
                commit.write_chunks(name, chunks)
                continue
            if safe_serialization:
                save_file(shard, commit.temp_path(name), metadata={"format": "pt"})
            else:
                torch.save(shard, commit.temp_path(name))
            commit.written(name)
        if len(shards) > 1:
            index = {"metadata": {"total_size": nbytes},
                     "weight_map": {key: name for name, shard in zip(names, shards) for key in shard}}
            commit.write_text(index_name, json.dumps(index, indent=2, sort_keys=True))
        save_code_files(commit, model.config.base_model_config, model.base_model)
        model.config.to_json_file(commit.temp_path(CONFIG_NAME))
        commit.written(CONFIG_NAME)
        commit.remove_after_commit(_stale_weights(save_directory, variant))
    logger.info("Saved %s to '%s' (%d tensors, %d file(s)).", type(model).__name__, save_directory,
                len(tensors), len(shards))


def save_code_files(commit: DirectoryCommit, config, core) -> None:
    """The code files of a core built from checkpoint code (``trust_remote_code=True``), published with the rest of
    the save (``commit``); the config's ``auto_map`` names them afterwards. transformers' ``custom_object_save`` copies
    them into a staging folder first, since it writes under the final names."""
    with tempfile.TemporaryDirectory(prefix="archit-code-") as staging:
        for path in save_code_of(config, core, staging):
            name = os.path.basename(path)
            shutil.copyfile(path, commit.temp_path(name))
            commit.written(name)


def checkpoint_layout(model, tensors: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """The tensors as the installed transformers era's ``save_pretrained`` would write the core's: on 5.x its load-time
    conversions reversed (per-expert matrices instead of fused ones, 4.x names), so that the checkpoint loads on every
    era, as transformers' own checkpoints do. The head's tensors are archit's own and stay as they are."""
    core = {key[len(CORE_PATH):]: tensor for key, tensor in tensors.items() if key.startswith(CORE_PATH)}
    if not core:
        return tensors
    reverted = compat.checkpoint_layout(model.base_model, core)
    rest = {key: tensor for key, tensor in tensors.items() if not key.startswith(CORE_PATH)}
    return {**{CORE_PATH + key: tensor.contiguous() for key, tensor in reverted.items()}, **rest}


def parse_size(size: Union[int, str]) -> int:
    """Bytes in ``size``: an int, or a string such as ``"5GB"``, ``"50KB"``, ``"10MiB"``."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)\s*", str(size).upper())
    if match is None:
        raise ValueError(f"max_shard_size must be an int or a size like '5GB'; got {size!r}.")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _without_shared_duplicates(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Keep the first name of every tensor that shares memory with an earlier one (a tied output matrix)."""
    kept, seen = {}, set()
    for key, tensor in state_dict.items():
        identity = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and identity in seen:
            continue
        seen.add(identity)
        kept[key] = tensor.detach().contiguous()
    return kept


def _safetensors_chunks(tensors: Dict[str, Tensor], metadata: Optional[Dict[str, str]]) -> Optional[Iterator[Any]]:
    """The bytes of ``safetensors.torch.save_file(tensors, path, metadata)``'s file, byte for byte (the header, then
    each tensor's own memory, not copied), so that the file can be written in pieces whose writeback starts early
    (``DirectoryCommit.write_chunks``); ``None`` where save_file is needed: a dtype not in ``_SAFETENSORS_DTYPES``, a
    tensor that is not a dense CPU tensor, a big-endian machine (save_file byte-swaps), more than one metadata entry
    (safetensors writes them in the order of a Rust hash map), no tensor but metadata (safetensors 0.4-0.8 write a
    header that is not JSON then)."""
    if sys.byteorder != "little" or len(metadata or {}) > 1 or (not tensors and metadata is not None) or not all(
            tensor.dtype in _SAFETENSORS_DTYPES and tensor.device.type == "cpu" and tensor.layout == torch.strided
            and tensor.is_contiguous() for tensor in tensors.values()):
        return None
    order = sorted(tensors, key=lambda key: (-_SAFETENSORS_RANK[tensors[key].dtype], key.encode("utf-8")))
    header: Dict[str, Any] = {} if metadata is None else {"__metadata__": metadata}
    offset = 0
    for key in order:
        tensor = tensors[key]
        header[key] = {"dtype": _SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                       "data_offsets": [offset, offset + _nbytes(tensor)]}
        offset += _nbytes(tensor)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)

    def chunks() -> Iterator[Any]:
        yield struct.pack("<Q", len(text)) + text
        for key in order:
            if tensors[key].numel():
                yield tensors[key].detach().reshape(-1).view(torch.uint8).numpy()

    return chunks()


def _nbytes(tensor: Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _shard(tensors: Dict[str, Tensor], max_bytes: int) -> List[Dict[str, Tensor]]:
    shards: List[Dict[str, Tensor]] = [{}]
    size = 0
    for key, tensor in tensors.items():
        if shards[-1] and size + _nbytes(tensor) > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += _nbytes(tensor)
    return shards


def _stale_weights(save_directory: Union[str, os.PathLike], variant: Optional[str]) -> List[str]:
    """The weight files (shards and index included, safetensors and ``.bin``) of an earlier save of the same variant,
    to remove once the new save is committed, so that none is left over to be read instead of, or together with, the
    new ones (those the new save writes again are replaced by its renames). Those of other variants (or without one,
    when saving a variant) stay."""
    return [name for name in os.listdir(save_directory)
            if weight_file_variant(name) == (True, variant) and os.path.isfile(os.path.join(save_directory, name))]
