"""Where each loaded tensor goes: one device, or a device map (``"auto"`` and friends) dispatched by accelerate."""
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

import torch
from accelerate import dispatch_model, infer_auto_device_map
from accelerate.utils import get_balanced_memory
from torch import nn

from .. import _compat as compat

_AUTO_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


@dataclass
class DevicePlacement:
    """A device per module prefix (``""`` for the whole model)."""
    device_map: Dict[str, Union[str, int, torch.device]]

    @classmethod
    def plan(cls, model: nn.Module, device_map: Any, max_memory: Optional[Dict], dtype: Optional[torch.dtype]) -> "DevicePlacement":
        if device_map is None:
            return cls({"": "cpu"})
        if isinstance(device_map, (int, torch.device)) or (isinstance(device_map, str) and device_map not in _AUTO_MAPS):
            return cls({"": device_map})
        if isinstance(device_map, str):
            no_split = compat.no_split_modules(model.base_model)
            if device_map != "sequential":
                max_memory = get_balanced_memory(model, max_memory=max_memory, no_split_module_classes=no_split,
                                                 dtype=dtype, low_zero=device_map == "balanced_low_0")
            device_map = infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=no_split,
                                               dtype=dtype)
        if not isinstance(device_map, dict):
            raise TypeError(f"device_map must be a device, a dict or one of {_AUTO_MAPS}; got {device_map!r}.")
        if any(device == "disk" for device in device_map.values()):
            raise NotImplementedError("device_map places modules on 'disk'; archit does not offload to disk.")
        return cls(dict(device_map))

    def device_of(self, tensor_name: str) -> Union[str, int, torch.device]:
        best, device = -1, "cpu"  # type: int, Union[str, int, torch.device]
        for prefix, candidate in self.device_map.items():
            if (prefix == "" or tensor_name == prefix or tensor_name.startswith(prefix + ".")) and len(prefix) > best:
                best, device = len(prefix), candidate
        return device

    def finish(self, model: nn.Module) -> None:
        """Move what was built outside the map (buffers) and dispatch across devices when there are several."""
        devices = set(map(str, self.device_map.values()))
        if len(devices) == 1:
            model.to(next(iter(self.device_map.values())))
        else:
            dispatch_model(model, device_map=self.device_map)
        if set(self.device_map) != {""}:
            model.hf_device_map = dict(self.device_map)  # As transformers records a device map it used.
