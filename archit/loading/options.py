"""The keyword arguments of ``from_pretrained`` and kin, read once into ``LoadOptions``."""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

from torch import nn

from .. import _compat as compat
from .files import HUB_KWARGS

TENSOR_PARALLEL = ("distributed_config", "tp_plan", "tp_size", "device_mesh")
"""The tensor-parallel keywords of transformers' ``from_pretrained`` (5.x; ``compat.TENSOR_PARALLEL_KEYWORDS``: those
the installed release has and archit follows)."""


@dataclass
class LoadOptions:
    """The keyword arguments of ``from_pretrained``, under one name each on every transformers release."""
    hub: Dict[str, Any] = field(default_factory=dict)
    dtype: Any = None
    device_map: Any = None
    max_memory: Optional[Dict] = None
    offload_folder: Optional[str] = None
    """Where tensors that the device map puts on ``"disk"`` are written when they cannot be read in place (a ``.bin``
    checkpoint, converted or newly initialised tensors)."""
    offload_buffers: Optional[bool] = None
    """Offload buffers with the parameters of modules on ``"disk"`` (accelerate's hooks); ``None``: not given."""
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
    tensor_parallel: Dict[str, Any] = field(default_factory=dict)
    """The tensor-parallel keywords given (``distributed_config``, ``tp_plan``, ``tp_size``, ``device_mesh``): the body
    takes the installed release's plan (``compat.distribute_core``), heads stay replicated."""

    _IGNORED = ("low_cpu_mem_usage", "_fast_init", "resume_download", "offload_state_dict")
    """Accepted and without effect: archit always loads without a second copy of the weights (``offload_state_dict``:
    4.x park the CPU part of the state dict on disk while loading to spare that copy; 5.x ignore it too)."""

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
            offload_folder=kwargs.pop("offload_folder", None),
            offload_buffers=kwargs.pop("offload_buffers", None),
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
        given = {name: kwargs.pop(name, None) for name in TENSOR_PARALLEL}
        options.tensor_parallel = {name: value for name, value in given.items() if value is not None}
        for name in options.tensor_parallel:
            if name not in compat.TENSOR_PARALLEL_KEYWORDS:
                raise TypeError(f"from_pretrained() got an unexpected keyword argument '{name}': archit follows "
                                f"tensor parallelism where transformers 5.x has it, not on transformers "
                                f"{compat.TRANSFORMERS_VERSION}.")
        if options.tensor_parallel and options.device_map is not None:
            raise ValueError("Tensor parallelism and device_map are mutually exclusive (as in transformers' "
                             "from_pretrained): pass one.")
        if options.offload_buffers is not None and not compat.OFFLOAD_BUFFERS_KEYWORD:
            raise TypeError(f"from_pretrained() got an unexpected keyword argument 'offload_buffers': transformers "
                            f"{compat.TRANSFORMERS_VERSION} has none (4.39 added it), and archit follows it.")
        if options.offload_folder is not None:
            options.offload_folder = str(options.offload_folder)
        if "use_auth_token" in kwargs:
            options.hub.setdefault("token", kwargs.pop("use_auth_token"))
        for name in cls._IGNORED:
            kwargs.pop(name, None)
        options.config_overrides = kwargs
        return options
