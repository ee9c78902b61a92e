"""Picks the backend of the installed transformers era, once, with a single ``if``."""
from .protocol import Backend
from .version import TRANSFORMERS_GE_4_50, TRANSFORMERS_GE_5_0

backend: Backend
if TRANSFORMERS_GE_5_0:
    from . import tf500 as backend
elif TRANSFORMERS_GE_4_50:
    from . import tf450 as backend
else:
    from . import tf436 as backend

__all__ = ["backend"]
