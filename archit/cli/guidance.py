"""What the ``archit`` command tells a user who asked for something it cannot do, before it does any work: the one
error type of the commands (``CommandError``), valid names with a close match, releases the package index does not
have (with the nearest ones it has), and the title a checkpoint goes by.

This module imports the standard library and ``archit.cli.releases`` only (no torch, no transformers): ``main`` imports
it to answer ``--help`` and ``--version`` at once; what needs archit's classes is imported inside the functions."""
import difflib
import logging
from typing import Iterable, Optional, Sequence

logger = logging.getLogger(__name__)


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


