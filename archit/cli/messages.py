"""The one error type of the ``archit`` commands (``CommandError``) and the wording of their messages (a close match
among valid names, lists). Imports the standard library only: ``main`` imports it to answer ``--help`` and
``--version`` without torch or transformers."""
import difflib
from typing import Any, Iterable, Optional, Sequence


class CommandError(Exception):
    """What the user asked for cannot be done: one line on stderr, and ``exit_code`` (2: a bad checkpoint or argument;
    1: the checkpoint is fine but the command cannot do it)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def close_match(name: str, valid: Iterable[str]) -> Optional[str]:
    """The valid name closest to a wrong one (``difflib``'s, case-insensitively), or ``None`` when none is close."""
    valid = list(valid)
    by_lower = {candidate.lower(): candidate for candidate in valid}
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


def did_you_mean(name: str, valid: Sequence[str]) -> str:
    """``" did you mean X?"`` for the closest valid name, or ``""``."""
    match = close_match(name, valid)
    return f" did you mean {match}?" if match else ""


def listing(names: Sequence[str]) -> str:
    """Names as one comma-separated list."""
    return ", ".join(names)


def are(items: Sequence[Any]) -> str:
    """``"are"`` for several items, ``"is"`` for one."""
    return "are" if len(items) > 1 else "is"
