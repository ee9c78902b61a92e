"""Where each loaded tensor goes: one device, or a device map (``"auto"`` and friends, inferred as the installed
transformers era infers it) dispatched by accelerate, ``"disk"`` entries included: those tensors stay on the meta device
and accelerate's hooks read them when their module runs, through an offload index (``DiskTensor``: read in place from
a safetensors checkpoint, or written into ``offload_folder`` by the era's own writer)."""
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
from accelerate.utils import OffloadedWeightsLoader, set_module_tensor_to_device
from torch import nn

from .. import _compat as compat

_AUTO_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
DISK = "disk"

Device = Union[str, int, torch.device]


@dataclass(frozen=True)
class DevicePlacement:
    """A device per module prefix (``""`` for the whole model), and whether the caller gave a ``device_map``."""
    device_map: Mapping[str, Device]
    given: bool = False

    @classmethod
    def plan(cls, model: nn.Module, device_map: Any, max_memory: Optional[Dict], dtype: Optional[torch.dtype]) -> "DevicePlacement":
        if device_map is None:
            return cls(MappingProxyType({"": "cpu"}))
        if isinstance(device_map, (int, torch.device)) or (isinstance(device_map, str) and device_map not in _AUTO_MAPS):
            return cls(MappingProxyType({"": device_map}), given=True)
        if isinstance(device_map, str):
            _in_loaded_dtype(model, dtype)
            device_map = compat.infer_device_map(model, device_map, max_memory,
                                                 compat.no_split_modules(model.base_model), dtype)
        if not isinstance(device_map, dict):
            raise TypeError(f"device_map must be a device, a dict or one of {_AUTO_MAPS}; got {device_map!r}.")
        return cls(MappingProxyType(dict(device_map)), given=True)

    def device_of(self, tensor_name: str) -> Device:
        best, device = -1, "cpu"  # type: int, Device
        for prefix, candidate in self.device_map.items():
            if (prefix == "" or tensor_name == prefix or tensor_name.startswith(prefix + ".")) and len(prefix) > best:
                best, device = len(prefix), candidate
        return device

    def on_disk(self, tensor_name: str) -> bool:
        return self.device_of(tensor_name) == DISK

    def memory_device_of(self, tensor_name: str) -> Device:
        """Where the tensor is materialised while loading: its device, or the CPU for one that goes to disk."""
        device = self.device_of(tensor_name)
        return "cpu" if device == DISK else device

    @property
    def has_disk(self) -> bool:
        return DISK in self.device_map.values()

    def finish(self, model: nn.Module, offload_folder: Optional[str], offload_index: Dict[str, Any],
               offload_buffers: bool) -> None:
        """Move what was built outside the map (buffers) and, for a ``device_map`` the caller gave, place the model as
        the installed transformers era's ``from_pretrained`` does (``compat.place``: accelerate's ``dispatch_model``,
        its hooks reading the tensors on ``"disk"`` through ``offload_index``)."""
        if not self.given:
            model.to(next(iter(self.device_map.values())))
            return
        compat.place(model, model.base_model, dict(self.device_map), offload_folder, offload_index, offload_buffers)


def _in_loaded_dtype(model: nn.Module, dtype: Optional[torch.dtype]) -> None:
    """Give the model's floating parameters (still on the meta device) the dtype they load in, so that an inferred
    device map is sized by it: transformers builds its model in that dtype, and 5.x's inference reads the sizes off
    the tensors (4.x's, accelerate's, takes ``dtype`` as well). Loading casts them to that dtype anyway."""
    if dtype is None:
        return
    for parameter in model.parameters():
        if parameter.device.type == "meta" and parameter.is_floating_point() and parameter.dtype != dtype:
            parameter.data = parameter.data.to(dtype)


@dataclass(frozen=True)
class DiskTensor:
    """A tensor of the model that goes to ``"disk"``: accelerate's hooks read it when its module runs."""
    dtype: torch.dtype
    """The dtype it loads in."""
    file: Optional[str] = None
    """The safetensors file of the checkpoint it is read from in place (as transformers reads a safetensors checkpoint's
    offloaded tensors); ``None``: it is written into ``offload_folder`` (stored in a ``.bin`` file, converted, or
    newly initialised)."""
    key: Optional[str] = None
    """Its key in ``file``."""

    @property
    def in_place(self) -> bool:
        return self.file is not None

    def index_entry(self) -> Dict[str, Any]:
        """Its entry in accelerate's offload index (``OffloadedWeightsLoader``), for a tensor read in place."""
        return {"safetensors_file": self.file, "weight_name": self.key, "dtype": str(self.dtype).replace("torch.", "")}


class Offload:
    """The offload index of a load (accelerate's format: model key -> where its hooks read it), filled from the plan's
    in-place entries and with the tensors written into ``offload_folder`` by the era's writer
    (``compat.offload_weight``)."""

    def __init__(self, disk: Mapping[str, DiskTensor], folder: Optional[str]) -> None:
        self.disk = disk
        self.folder = folder
        self.index: Dict[str, Any] = {name: tensor.index_entry() for name, tensor in disk.items() if tensor.in_place}
        self.written = 0

    def reads_in_place(self, name: str) -> bool:
        return name in self.disk and self.disk[name].in_place

    def takes(self, name: str) -> bool:
        """Whether the tensor ``name`` goes to disk (and so is not assigned to the model)."""
        return name in self.disk

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if self.folder is None:  # The plan refuses this; a tensor only conversion reveals can still get here.
            raise ValueError(f"device_map puts {name} on 'disk' and it must be written there: pass offload_folder=.")
        if self.written == 0:
            os.makedirs(self.folder, exist_ok=True)
        tensor = tensor.detach().to("cpu", self.disk[name].dtype).contiguous()
        self.index = compat.offload_weight(tensor, name, self.folder, self.index)
        self.written += 1

    def copy_input_embeddings(self, model: nn.Module, name: str, placement: DevicePlacement, dtype: Any) -> None:
        """The untied output matrix ``name`` gets the input embeddings (a task checkpoint stores the matrix once)."""
        embeddings = model.get_input_embeddings().weight
        if embeddings.device.type == "meta":  # The input embeddings are on disk: read from where they are.
            source = next(n for n, p in model.named_parameters() if p is embeddings)
            if self.takes(name):
                self.index[name] = self.index[source]
                return
            value = OffloadedWeightsLoader(save_folder=self.folder, index=self.index)[source]
        else:
            value = embeddings.detach().clone()
        if self.takes(name):
            self.write(name, value)
        else:
            set_module_tensor_to_device(model, name, placement.memory_device_of(name), value=value, dtype=dtype)

    def write_initialised(self, model: nn.Module, missing: List[str]) -> None:
        """Write the newly initialised tensors that go to disk, and leave them on the meta device."""
        for name in missing:
            if self.takes(name):
                self.write(name, _tensor_at(model, name))
                set_module_tensor_to_device(model, name, "meta")

    def index_tied_aliases(self, model: nn.Module) -> None:
        """A tied tensor on disk is read under each of its names (accelerate's hooks look a module's own names up)."""
        if not self.index:
            return
        names: Dict[int, str] = {}
        for name, parameter in model.named_parameters(remove_duplicate=False):
            first = names.setdefault(id(parameter), name)
            if first != name and first in self.index and name not in self.index:
                self.index[name] = self.index[first]

    def save(self) -> None:
        if self.folder is not None and self.written:
            compat.save_offload_index(self.index, self.folder)


def _tensor_at(model: nn.Module, name: str) -> torch.Tensor:
    module_name, _, tensor_name = name.rpartition(".")
    return getattr(model.get_submodule(module_name), tensor_name)
