"""The keyword arguments of ``from_pretrained`` and kin, read once into ``LoadOptions``."""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

from torch import nn

from .files import HUB_KWARGS


@dataclass
class LoadOptions:
    """The keyword arguments of ``from_pretrained``, under one name each on every transformers release."""
    hub: Dict[str, Any] = field(default_factory=dict)
    dtype: Any = None
    device_map: Any = None
    max_memory: Optional[Dict] = None
    attn_implementation: Optional[str] = None
    experts_implementation: Optional[Union[str, Dict[str, Any]]] = None
    """How mixture-of-experts layers compute (transformers 5.x: ``"eager"``, ``"grouped_mm"``, ...); ``None``: the
    installed transformers chooses, as its own ``from_pretrained`` does."""
    ignore_mismatched_sizes: bool = False
    ignore_unplaced_weights: bool = False
    output_loading_info: bool = False
    use_safetensors: Optional[bool] = None
    variant: Optional[str] = None
    key_mapping: Optional[Dict[str, str]] = None
    loss: Optional[nn.Module] = None
    trust_remote_code: bool = False
    """Build a base model from the code that ships with the checkpoint (its ``auto_map``); never ``None``."""
    verify: bool = False
    """Check the weight files' checksums (``integrity.py``) before loading them."""
    code_revision: Optional[str] = None
    generation_config: Any = None
    """A ``GenerationConfig`` for a model that generates, instead of the checkpoint's ``generation_config.json``."""
    config_overrides: Dict[str, Any] = field(default_factory=dict)

    _IGNORED = ("low_cpu_mem_usage", "_fast_init", "resume_download", "offload_state_dict")

    @classmethod
    def from_kwargs(cls, kwargs: Dict[str, Any]) -> "LoadOptions":
        kwargs = dict(kwargs)
        if "torch_dtype" in kwargs and "dtype" in kwargs and kwargs["torch_dtype"] != kwargs["dtype"]:
            raise ValueError(f"Got dtype={kwargs['dtype']} and torch_dtype={kwargs['torch_dtype']}: pass one.")
        options = cls(
            hub={k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs},
            dtype=kwargs.pop("dtype", kwargs.pop("torch_dtype", None)),
            device_map=kwargs.pop("device_map", None),
            max_memory=kwargs.pop("max_memory", None),
            attn_implementation=kwargs.pop("attn_implementation", None),
            experts_implementation=kwargs.pop("experts_implementation", None),
            ignore_mismatched_sizes=kwargs.pop("ignore_mismatched_sizes", False),
            ignore_unplaced_weights=kwargs.pop("ignore_unplaced_weights", False),
            output_loading_info=kwargs.pop("output_loading_info", False),
            use_safetensors=kwargs.pop("use_safetensors", None),
            variant=kwargs.pop("variant", None),
            key_mapping=kwargs.pop("key_mapping", None),
            loss=kwargs.pop("loss", None),
            trust_remote_code=bool(kwargs.pop("trust_remote_code", False)),
            verify=bool(kwargs.pop("verify", False)),
            code_revision=kwargs.pop("code_revision", None),
            generation_config=kwargs.pop("generation_config", None),
        )
        kwargs.pop("torch_dtype", None)
        if "use_auth_token" in kwargs:
            options.hub.setdefault("token", kwargs.pop("use_auth_token"))
        for name in cls._IGNORED:
            kwargs.pop(name, None)
        options.config_overrides = kwargs
        return options
