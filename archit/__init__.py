"""archit: task heads on top of any Hugging Face transformers base model (``archit.instantiation``), and class code for
models modified in place (``archit.declaration``).

The published ArchIt exposed ``printDifference`` at the top level (``from archit import printDifference``); so does
this one. ``CheckpointError`` (an ``OSError`` and a ``ValueError``) is what loading raises for a damaged checkpoint:
it names the file, and the key or field, at fault.

These names are imported on first use (PEP 562's module ``__getattr__``), not by ``import archit``: the declaration
compiler imports torch, and ``archit --help`` (which imports this package) must answer without it.
"""
import importlib
from typing import TYPE_CHECKING, Any, List

__version__ = "2026.11.0"  # Defined before anything is imported: every layer may read it.

__all__ = ["__version__", "printDifference", "renderDifference", "CheckpointError"]

_LAZY = {"printDifference": ".declaration.compiler", "renderDifference": ".declaration.compiler",
         "CheckpointError": ".loading.errors"}
"""The public names imported on first access: name -> the module (relative to this package) that defines it."""

if TYPE_CHECKING:  # For type checkers: the names as the modules define them.
    from .declaration.compiler import printDifference as printDifference
    from .declaration.compiler import renderDifference as renderDifference
    from .loading.errors import CheckpointError as CheckpointError


def __getattr__(name: str) -> Any:
    """``archit.printDifference`` and the other public names of ``_LAZY``: imported now, then kept in the module."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted({*globals(), *_LAZY})
