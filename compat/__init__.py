"""The only place that knows transformers' internals. ``archit`` uses the names re-exported here and nothing else.

One backend module per transformers era (``tf436``, ``tf450``, ``tf500``), chosen once at import in ``main``; each
satisfies the ``Backend`` protocol.
"""
from .main import backend as backend
from .protocol import Backend as Backend
from .shared import TRANSFORMERS_VERSION as TRANSFORMERS_VERSION

ERA = backend.ERA
PreTrainedWrapper = backend.PreTrainedWrapper
set_attn_implementation = backend.set_attn_implementation
set_config_dtype = backend.set_config_dtype
get_config_dtype = backend.get_config_dtype
init_core_module = backend.init_core_module
no_init_weights = backend.no_init_weights
no_split_modules = backend.no_split_modules
resolve_file = backend.resolve_file
stored_config_dict = backend.stored_config_dict

__all__ = [
    "Backend", "backend", "ERA", "TRANSFORMERS_VERSION", "PreTrainedWrapper", "set_attn_implementation",
    "set_config_dtype", "get_config_dtype", "init_core_module", "no_init_weights", "no_split_modules", "resolve_file",
    "stored_config_dict",
]
