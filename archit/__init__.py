"""archit: task heads on top of any Hugging Face transformers base model (``archit.instantiation``), and class code for
models modified in place (``archit.declaration``).

The published ArchIt exposed ``printDifference`` at the top level (``from archit import printDifference``); so does
this one. ``CheckpointError`` (an ``OSError`` and a ``ValueError``) is what loading raises for a damaged checkpoint:
it names the file, and the key or field, at fault.
"""
__version__ = "2026.11.0"  # Defined before anything is imported: every layer may read it.

from .declaration.compiler import printDifference as printDifference  # noqa: E402
from .declaration.compiler import renderDifference as renderDifference  # noqa: E402
from .loading.errors import CheckpointError as CheckpointError  # noqa: E402

__all__ = ["__version__", "printDifference", "renderDifference", "CheckpointError"]
