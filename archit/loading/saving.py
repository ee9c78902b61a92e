"""``ModelWithHead.save_pretrained``: ``config.json`` plus weights, safetensors by default, sharded, tied tensors once;
crash-consistent (``commits.py``: the folder holds the old or the new checkpoint whenever the save dies); the
code files of a base model built from checkpoint code (``trust_remote_code=True``) saved with it.

A model that FSDP shards (FSDP1 or FSDP2, ``gathering.py``) is saved by a collective, as transformers 5.24 saves one it
sharded itself: every rank calls ``save_pretrained``, the full state dict is gathered through torch's distributed
state-dict API, rank 0 (if ``is_main_process``) writes it as an unsharded model's save, and every rank returns once
the checkpoint is committed (or raises if rank 0 failed). An explicit ``state_dict=`` (the Trainer's, gathered by
accelerate's ``get_state_dict`` on rank 0) is written as given, by the main process alone, with no collective."""
import json
import logging
import os
import re
from typing import Any, Callable, Dict, List, Optional, Union

import torch.distributed as dist
from torch import Tensor

from .. import _compat as compat
from .checkpointcode import save_code_of
from .commits import DirectoryCommit
from .files import (
    CONFIG_NAME,
    GENERATION_CONFIG_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    add_variant,
    check_variant,
    weight_file_variant,
)
from .gathering import fsdp_root, gather_full_state_dict, tied_names
from .keys import CORE_PATH
from .writing import WeightWriter, tensor_nbytes

logger = logging.getLogger(__name__)

_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_ACCEPTED_AND_UNUSED = ("push_to_hub", "token", "save_peft_format", "save_function")


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
    parse_size(max_shard_size)  # A bad argument raises on every rank, before any collective.
    root = fsdp_root(model) if state_dict is None else None
    if root is not None:
        _save_gathered(model, root, save_directory, max_shard_size, safe_serialization, is_main_process, variant)
        return
    if not is_main_process:
        return
    if state_dict is not None:  # Gathered by the caller (the Trainer under FSDP): tied names hold copies.
        tied = set(tied_names(model, list(state_dict)))
        state_dict = {key: tensor for key, tensor in state_dict.items() if key not in tied}
    tensors = _without_shared_duplicates(model.state_dict() if state_dict is None else state_dict)
    _write_model(model, tensors, save_directory, max_shard_size, safe_serialization, variant)


def _save_gathered(model, root, save_directory: Union[str, os.PathLike], max_shard_size: Union[int, str],
                   safe_serialization: bool, is_main_process: bool, variant: Optional[str]) -> None:
    """The save of a model FSDP shards, on every rank: gather (``root``: ``gathering.fsdp_root``), rank 0 writes, then
    every rank learns from rank 0 how the write went (a broadcast, which is also the barrier)."""
    gathered = gather_full_state_dict(root)
    failure: Optional[BaseException] = None
    if is_main_process and dist.get_rank() == 0:
        try:
            tied = set(tied_names(model, list(gathered)))
            tensors = {key: tensor.detach().contiguous() for key, tensor in gathered.items() if key not in tied}
            _write_model(model, tensors, save_directory, max_shard_size, safe_serialization, variant)
        except BaseException as error:  # noqa: BLE001 - re-raised below, once the other ranks know
            failure = error
    del gathered  # Before waiting for rank 0: the other ranks hold a full copy when gathering on the CPU.
    outcome = [None if failure is None else f"{type(failure).__name__}: {failure}"]
    dist.broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise failure
    if outcome[0] is not None:
        raise RuntimeError(f"save_pretrained failed on rank 0, which writes '{save_directory}': {outcome[0]}")


def _write_model(model, tensors: Dict[str, Tensor], save_directory: Union[str, os.PathLike],
                 max_shard_size: Union[int, str], safe_serialization: bool, variant: Optional[str]) -> None:
    """Write ``tensors`` (the model's, each tensor once) and the model's files into ``save_directory``, committed."""
    tensors = checkpoint_layout(model, tensors)
    shards = _shard(tensors, parse_size(max_shard_size))
    weights_name, index_name = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME) if safe_serialization \
        else (WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
    weights_name, index_name = add_variant(weights_name, variant), add_variant(index_name, variant)
    stem, extension = weights_name.rsplit(".", 1)
    names = [weights_name] if len(shards) == 1 else \
        [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.{extension}" for i in range(len(shards))]
    nbytes = sum(tensor_nbytes(t) for t in tensors.values())

    with DirectoryCommit(save_directory) as commit, WeightWriter(commit) as writer:
        for name, shard in compat.progress(zip(names, shards), len(shards), "Writing model shards", len(tensors),
                                           nbytes):
            if safe_serialization:
                writer.safetensors(name, shard, {"format": "pt"})
            else:
                writer.bin(name, shard)
        if len(shards) > 1:
            index = {"metadata": {"total_size": nbytes, **writer.index_metadata()},
                     "weight_map": {key: name for name, shard in zip(names, shards) for key in shard}}
            commit.write_text(index_name, json.dumps(index, indent=2, sort_keys=True))
        save_code_files(commit, model.config.base_model_config, model.base_model)
        save_generation_config(commit, getattr(model, "generation_config", None))
        model.config.to_json_file(commit.temp_path(CONFIG_NAME))
        commit.written(CONFIG_NAME)
        commit.remove_after_commit(_stale_weights(save_directory, variant))
    logger.info("Saved %s to '%s' (%d tensors, %d file(s)).", type(model).__name__, save_directory,
                len(tensors), len(shards))


def save_code_files(commit: DirectoryCommit, config, core) -> None:
    """The code files of a core built from checkpoint code (``trust_remote_code=True``), published with the rest of
    the save (``commit``); the config's ``auto_map`` names them afterwards. transformers' ``custom_object_save`` writes
    them under their final names: into the save's staging folder."""
    staging = os.path.join(commit.staging_folder(), "code")
    os.makedirs(staging, exist_ok=True)
    for path in dict.fromkeys(save_code_of(config, core, staging)):
        commit.adopt(os.path.basename(path), path)


def save_generation_config(commit: DirectoryCommit, generation_config: Optional[Any]) -> None:
    """A model that generates has its ``generation_config.json`` published with the rest of the save (``commit``), as
    transformers' ``save_pretrained`` writes it: by ``GenerationConfig.save_pretrained`` (which checks the settings),
    into the save's staging folder. Nothing for a model without a generation config."""
    if generation_config is None:
        return
    staging = os.path.join(commit.staging_folder(), "generation")
    os.makedirs(staging, exist_ok=True)
    generation_config.save_pretrained(staging)
    commit.adopt(GENERATION_CONFIG_NAME, os.path.join(staging, GENERATION_CONFIG_NAME))


def save_through_transformers(save_directory: Union[str, os.PathLike], write: Callable[[str], None],
                              variant: Optional[str] = None) -> None:
    """
    A save that transformers writes (``write(folder)``: a ``save_pretrained`` of transformers' own), made
    crash-consistent as archit's own saves are: transformers writes into the save's staging folder, and its files are
    published together with one commit (``commits.py``), safetensors files with their checksum added (``writing.py``);
    the earlier save's weight files of the same variant that the new one does not replace are removed, as transformers
    removes them.
    """
    if os.path.isfile(save_directory):
        raise ValueError(f"save_pretrained needs a directory, but '{save_directory}' is a file.")
    check_variant(variant)
    with DirectoryCommit(save_directory) as commit, WeightWriter(commit) as writer:
        staging = os.path.join(commit.staging_folder(), "transformers")
        os.mkdir(staging)
        write(staging)
        writer.adopt_staged(staging)
        commit.remove_after_commit(_stale_weights(save_directory, variant))


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


def _shard(tensors: Dict[str, Tensor], max_bytes: int) -> List[Dict[str, Tensor]]:
    shards: List[Dict[str, Tensor]] = [{}]
    size = 0
    for key, tensor in tensors.items():
        if shards[-1] and size + tensor_nbytes(tensor) > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += tensor_nbytes(tensor)
    return shards


def _stale_weights(save_directory: Union[str, os.PathLike], variant: Optional[str]) -> List[str]:
    """The weight files (shards and index included, safetensors and ``.bin``) of an earlier save of the same variant,
    to remove once the new save is committed, so that none is left over to be read instead of, or together with, the
    new ones (those the new save writes again are replaced by its renames). Those of other variants (or without one,
    when saving a variant) stay."""
    return [name for name in os.listdir(save_directory)
            if weight_file_variant(name) == (True, variant) and os.path.isfile(os.path.join(save_directory, name))]
