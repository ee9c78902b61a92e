"""The only place that knows transformers' internals; installed as ``archit._compat``. ``archit`` uses the names
re-exported here and nothing else.

One backend module per transformers era (``tf436``, ``tf450``, ``tf500``), chosen once at import in ``main``; each
satisfies the ``Backend`` protocol, which lists only what differs per era. What is the same in every era comes from
``all_eras``; the version flags from ``version``.
"""
from .all_eras import CONFIG_DTYPE_KEYS as CONFIG_DTYPE_KEYS
from .all_eras import ConversionUnit as ConversionUnit
from .all_eras import FsdpReceiver as FsdpReceiver
from .all_eras import adopt_core_flags as adopt_core_flags
from .all_eras import checkpoint_code_class as checkpoint_code_class
from .all_eras import disable_activation_checkpointing as disable_activation_checkpointing
from .all_eras import enable_activation_checkpointing as enable_activation_checkpointing
from .all_eras import full_shape as full_shape
from .all_eras import get_config_dtype as get_config_dtype
from .all_eras import hide_kwargs_from_signature as hide_kwargs_from_signature
from .all_eras import init_core_module as init_core_module
from .all_eras import is_activation_checkpointing as is_activation_checkpointing
from .all_eras import is_checkpoint_code as is_checkpoint_code
from .all_eras import is_partitioned as is_partitioned
from .all_eras import no_split_modules as no_split_modules
from .all_eras import progress as progress
from .all_eras import resolve_file as resolve_file
from .all_eras import save_checkpoint_code as save_checkpoint_code
from .all_eras import stored_config_dict as stored_config_dict
from .all_eras import trusts_checkpoint_code as trusts_checkpoint_code
from .all_eras import zero3_enabled as zero3_enabled
from .all_eras import zero3_gathered as zero3_gathered
from .all_eras import zero3_init as zero3_init
from .all_eras import zero3_load as zero3_load
from .all_eras import zero3_state as zero3_state
from .main import backend as backend
from .protocol import Backend as Backend
from .version import TRANSFORMERS_GE_4_56 as TRANSFORMERS_GE_4_56
from .version import TRANSFORMERS_VERSION as TRANSFORMERS_VERSION

ERA: str = backend.ERA
CACHE_NAME: str = backend.CACHE_NAME
PreTrainedWrapper: type = backend.PreTrainedWrapper
GenerationMixin: type = backend.GenerationMixin
set_attn_implementation = backend.set_attn_implementation
set_experts_implementation = backend.set_experts_implementation
set_config_dtype = backend.set_config_dtype
no_init_weights = backend.no_init_weights
convert_checkpoint = backend.convert_checkpoint
checkpoint_layout = backend.checkpoint_layout
as_auto_model_class = backend.as_auto_model_class
modernbert_config_class = backend.modernbert_config_class
OFFLOAD_BUFFERS_KEYWORD: bool = backend.OFFLOAD_BUFFERS_KEYWORD
infer_device_map = backend.infer_device_map
place = backend.place
offload_weight = backend.offload_weight
save_offload_index = backend.save_offload_index
# FSDP RAM-efficient loading (issue 21).
fsdp_receiver = backend.fsdp_receiver
# Tensor parallelism (issue 21).
TENSOR_PARALLEL_KEYWORDS = backend.TENSOR_PARALLEL_KEYWORDS
distribute_core = backend.distribute_core
load_sharded = backend.load_sharded
distribute_tied_heads = backend.distribute_tied_heads

__all__ = [
    "Backend", "backend", "ERA", "CACHE_NAME", "TRANSFORMERS_VERSION", "TRANSFORMERS_GE_4_56", "PreTrainedWrapper", "set_attn_implementation",
    "set_experts_implementation", "set_config_dtype", "get_config_dtype", "init_core_module", "no_init_weights",
    "no_split_modules", "resolve_file", "stored_config_dict", "ConversionUnit", "convert_checkpoint",
    "checkpoint_layout", "progress",
    "trusts_checkpoint_code", "checkpoint_code_class", "is_checkpoint_code", "save_checkpoint_code",
    "as_auto_model_class", "hide_kwargs_from_signature", "modernbert_config_class", "enable_activation_checkpointing",
    "disable_activation_checkpointing", "is_activation_checkpointing", "CONFIG_DTYPE_KEYS", "GenerationMixin",
    "adopt_core_flags", "OFFLOAD_BUFFERS_KEYWORD", "infer_device_map", "place", "offload_weight", "save_offload_index",
    "FsdpReceiver", "fsdp_receiver",
    "TENSOR_PARALLEL_KEYWORDS", "distribute_core", "load_sharded", "distribute_tied_heads",
    # DeepSpeed ZeRO-3 (issue 21).
    "zero3_enabled", "zero3_init", "zero3_state", "zero3_gathered", "zero3_load", "is_partitioned", "full_shape",
]
