"""The full state dict of a model that FSDP shards across the ranks of a process group, for ``save_pretrained``.

archit gathers nothing itself: torch's distributed state-dict API (``get_model_state_dict`` with
``StateDictOptions(full_state_dict=True)``) does, as transformers 5.24's ``save_pretrained`` and accelerate's
``get_state_dict`` do. Gathering is a collective: every rank of the group calls it, or none does.

Where the model under FSDP is:

- FSDP2 (``fully_shard``, accelerate's ``fsdp_version=2``): the model itself; its class becomes an ``FSDPModule``
  subclass and its parameters ``DTensor``s.
- FSDP1 (``FullyShardedDataParallel``, accelerate's ``fsdp_version=1``): a wrapper around the model (what
  ``accelerator.prepare`` returns; ``accelerator.unwrap_model`` gives the model inside, and the wrapper forwards
  ``save_pretrained`` to it). Only the wrapper can gather (its own flat parameter holds what no nested unit does), and
  a module does not know its parent: the wrapper is found among the live objects (``gc``), as the
  ``FullyShardedDataParallel`` whose ``module`` is the model. torch marks every module FSDP manages
  (``_is_fsdp_managed_module``, what transformers' ``is_fsdp_managed_module`` reads), so that search runs only then.
"""
import gc
import logging
from typing import Dict, List, Optional

import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

logger = logging.getLogger(__name__)


def fsdp_root(model: nn.Module) -> Optional[nn.Module]:
    """The module to gather ``model``'s full state dict through when FSDP shards it over an initialised process group:
    ``model`` itself under FSDP2, the ``FullyShardedDataParallel`` wrapping it under FSDP1. ``None`` otherwise (no
    process group, plain DDP, a single process).

    :raises ValueError: FSDP manages ``model`` as part of a bigger FSDP1 unit, whose wrapper is not around ``model``
        itself: only that unit's root can gather."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    if isinstance(model, FSDPModule):
        return model
    if not getattr(model, "_is_fsdp_managed_module", False):
        return None
    # By type, not isinstance: a live object's ``__class__`` may be a property that raises (a lazy proxy).
    wrapper = next((candidate for candidate in gc.get_objects()
                    if issubclass(type(candidate), FullyShardedDataParallel) and candidate.module is model), None)
    if wrapper is None:
        raise ValueError(f"FSDP manages this {type(model).__name__}, but no FullyShardedDataParallel wraps it "
                         f"directly (it is part of a bigger FSDP unit): save_pretrained cannot gather its weights. "
                         f"Gather them on every rank with torch's get_model_state_dict(root, "
                         f"options=StateDictOptions(full_state_dict=True)) and pass them as state_dict= on rank 0.")
    return wrapper


def gather_full_state_dict(root: nn.Module) -> Dict[str, Tensor]:
    """The full (unsharded) state dict of the FSDP model ``root`` (``fsdp_root``), under the model's own names; call it
    on every rank. Parameters on an accelerator are gathered to CPU on rank 0 alone (``cpu_offload``: the other ranks
    get ``{}``), so that no device holds the whole model; parameters already on the CPU are gathered as they are, on
    every rank (torch 2.13's FSDP1 frees the gathered CPU tensors it offloads "to" the CPU before returning them)."""
    on_cpu = all(parameter.device.type == "cpu" for parameter in root.parameters())
    options = StateDictOptions(full_state_dict=True, cpu_offload=not on_cpu)
    return get_model_state_dict(root, options=options)


def tied_names(model: nn.Module, keys: List[str]) -> List[str]:
    """The names in ``keys`` (a state dict's, in its order) under which ``model`` holds a tensor it already
    holds under an earlier one (a tied output matrix): gathering copies each name's tensor apart (torch's and
    accelerate's alike), so ties are read on the model. Under FSDP1 a name is an attribute path (the parameters of ``use_orig_params=False`` are plain
    attributes, a nested unit forwards the attributes of the module it wraps), and tied names hold one object."""
    seen, tied = set(), []
    for key in keys:
        owner, _, name = key.rpartition(".")
        try:
            held = getattr(model.get_submodule(owner) if owner else model, name, None)
        except AttributeError:  # A name the model does not have (a state dict given to save_pretrained).
            continue
        if held is None:
            continue
        if id(held) in seen:
            tied.append(key)
        seen.add(id(held))
    return tied
