"""Giving back the memory of a weight file's pages once their tensors are read and no longer needed.

safetensors answers a tensor as a view of its memory map of the file: the pages a read touches become resident in the
process and count in its memory (RSS) for as long as the map lives, i.e. the whole load, and the model's life when
other tensors of the file are parameters (views). When a tensor is only read, because a conversion merges it into a
new one (transformers 5's fused experts) or because it is cast or moved to another device, its pages are given back
after the read (``madvise(MADV_DONTNEED)``): the file's data stays in the page cache, and a later read faults the pages
in again, unchanged (the map is private and nothing writes to it while loading). Only whole pages inside the tensor's
bytes are given back, and only inside a mapping of that very file (``/proc/self/maps``), so no other memory is
touched. Where there is no such interface (not Linux), nothing is given back: loads only keep more memory resident.
"""
import ctypes
import logging
import mmap
import os
from typing import Callable, List, Optional, Tuple

from torch import Tensor

logger = logging.getLogger(__name__)

_MAPS = "/proc/self/maps"
_Region = Tuple[int, int]


def _madvise() -> Optional[Callable[[int, int, int], int]]:
    """libc's ``madvise``, or ``None`` where it or ``MADV_DONTNEED`` or ``/proc/self/maps`` is unavailable."""
    if not hasattr(mmap, "MADV_DONTNEED") or not os.path.exists(_MAPS):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_MADVISE = _madvise()


class FilePages:
    """The pages of one weight file mapped into this process, given back tensor by tensor (``release``)."""

    def __init__(self, path: str):
        self.path = path
        self._inode: Optional[Tuple[int, int, int]] = None  # device major, minor, inode number
        self._regions: Optional[List[_Region]] = None  # The file's mappings, read once, at the first release.
        if _MADVISE is not None:
            stat = os.stat(path)
            self._inode = (os.major(stat.st_dev), os.minor(stat.st_dev), stat.st_ino)

    def release(self, tensor: Tensor) -> None:
        """Give back the whole pages inside ``tensor``'s bytes, a view of this file's memory map no longer needed."""
        if _MADVISE is None or self._inode is None or tensor.numel() == 0:
            return
        start = tensor.data_ptr()
        end = start + tensor.nbytes
        if self._regions is None:
            self._regions = _mappings_of(self._inode)
        if not any(low <= start and end <= high for low, high in self._regions):
            return  # Not a view of this file's map (a copy): nothing of the file to give back.
        page = mmap.PAGESIZE
        first, last = -(-start // page) * page, end // page * page
        if last > first and _MADVISE(first, last - first, mmap.MADV_DONTNEED) != 0:
            logger.debug("madvise(MADV_DONTNEED) of %s failed: errno %d", self.path, ctypes.get_errno())


def _mappings_of(inode: Tuple[int, int, int]) -> List[_Region]:
    """The address ranges at which this process maps the file ``inode`` (device major, minor, inode number)."""
    regions = []
    with open(_MAPS, encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or fields[4] != str(inode[2]):
                continue
            major, minor = (int(part, 16) for part in fields[3].split(":"))
            if (major, minor) == inode[:2]:
                low, high = (int(part, 16) for part in fields[0].split("-"))
                regions.append((low, high))
    return regions

