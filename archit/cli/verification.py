"""``archit verify CHECKPOINT``: every checksum archit wrote into a checkpoint's weight files recomputed, the structure
of the rest checked (``archit/loading/integrity.py``)."""
from typing import Optional

from ..loading.errors import CheckpointError
from ..loading.integrity import VerifyReport, verify_checkpoint
from .classes import CommandError


def verify_command(checkpoint: str, variant: Optional[str] = None) -> VerifyReport:
    """The report on ``checkpoint``; ``CommandError`` (exit 2) when it is no checkpoint folder at all, or (exit 1) when
    a file it needs cannot be used, so that no file-by-file report can be made."""
    try:
        return verify_checkpoint(checkpoint, variant)
    except CheckpointError as error:
        raise CommandError(str(error), exit_code=1) from error
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from error
