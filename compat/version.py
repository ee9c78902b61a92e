"""The installed transformers version, read once at import, and the named era boundaries derived from it.

Boundaries compare against ``X.Y.0.dev0`` so that a development build counts as the release it leads to. Nothing else
in archit reads ``transformers.__version__``.
"""
import transformers
from packaging.version import Version

TRANSFORMERS_VERSION = Version(transformers.__version__)

TRANSFORMERS_GE_4_39 = TRANSFORMERS_VERSION >= Version("4.39.0.dev0")
"""``from_pretrained`` takes ``offload_buffers=`` (within the 4.36 era)."""
TRANSFORMERS_GE_4_56 = TRANSFORMERS_VERSION >= Version("4.56.0.dev0")
"""``from_pretrained`` takes ``dtype=`` (``torch_dtype=`` before)."""
TRANSFORMERS_GE_4_50 = TRANSFORMERS_VERSION >= Version("4.50.0.dev0")
TRANSFORMERS_GE_5_0 = TRANSFORMERS_VERSION >= Version("5.0.0.dev0")
