"""``CheckpointError``: the one error for a checkpoint that is damaged or not what it claims to be."""
from typing import Optional

__all__ = ["CheckpointError"]


class CheckpointError(OSError, ValueError):
    """
    A checkpoint file that cannot be used as it is: truncated, bit-flipped, not JSON, of the wrong type, naming a file
    that is missing, unreadable. ``path`` is the file at fault and ``key`` (when there is one) the tensor or field in
    it; both are in the message. An ``OSError`` (as transformers reports unreadable checkpoints) and a ``ValueError``
    (as it reports bad contents), so that code catching either keeps working.
    """

    def __init__(self, path: str, problem: str, key: Optional[str] = None):
        self.path, self.problem, self.key = str(path), problem, key
        where = f"{self.path}, {key}:" if key is not None else f"{self.path}:"
        super().__init__(f"{where} {problem}")

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self):
        return type(self), (self.path, self.problem, self.key)
