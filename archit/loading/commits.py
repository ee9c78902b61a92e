"""Crash-consistent saves into a checkpoint folder, and reads that never see a half-written checkpoint.

A save replaces several files that must change together: ``config.json`` and the weights (``model.safetensors``, or
shards plus ``model.safetensors.index.json``, of one variant), and ``generation_config.json`` for a model that
generates, while files that are not ours (tokenizer files, ``trainer_state.json``, ``optimizer.pt``, a README, weights
of other variants) stay as they are. The file names and formats stay transformers' own, so that a completed save is
read by transformers and by the published ArchIt.

**Saving** (``DirectoryCommit``), under an exclusive ``fcntl.flock`` on the folder itself, held for the whole save (two processes saving at once run one after the other, and the folder ends with the checkpoint of the one
that finished last):

1. Roll a journal left by an earlier save forward and remove temporary files of saves that died before their commit.
2. Write every new file under a temporary name in the same folder, ``.archit-tmp-<save id>-<final name>.part``; fsync
   each (in a background thread, while the next file is written). Writers that write under final names (transformers'
   ``save_pretrained``, safetensors' ``save_file``) write into the save's staging folder
   ``.archit-tmp-<save id>-staging.part/``, and the save adopts their files (``adopt``: renamed to temporary names). Large files (``write_chunks``) have the writeback of
   every 64 MB started as soon as they are written (Linux ``sync_file_range``, queued on the same thread), so that the
   disk writes while the rest is written and the fsync has little left. The cached pages of the file a new one will
   replace are dropped first (``POSIX_FADV_DONTNEED``: only pages already on disk and not mapped), so that the new file
   reuses them instead of taking as many more (writing next to a cached copy was up to 1 s slower for 500 MB).
3. **Commit point**: write the journal ``.archit-commit.json`` (final name -> temporary name, in rename order, and the
   stale files of the old checkpoint to remove) under a temporary name, fsync it, rename it into place, fsync the
   folder.
4. Rename each temporary file to its final name (the weights first, ``config.json`` last), fsync the folder, delete
   the stale files (old shards the new index does not name; the single file when the new save is sharded, or the
   index and shards when it is not), delete the journal, fsync the folder. The files replaced or deleted are held
   open meanwhile and closed in a background thread (``_hold_replaced``), so that freeing their blocks (~0.1 s per
   500 MB on ext4) happens after the save returns, when they no longer have a name.

A save that fails before step 3 (an exception, a write error such as ENOSPC/EFBIG) removes its temporary files and
re-raises the original error with a note that the previous checkpoint is intact; killed before step 3, it leaves only
temporary files, which no reader looks at and the next save or load that can take the lock removes. From step 3 on the new checkpoint is the
checkpoint: a save that dies during step 4 leaves the journal, and the next archit save or load rolls it forward
(renaming what is not renamed yet, deleting what is not deleted yet: both are idempotent).

**Reading** (``resolve_local``, ``read_consistently``): archit resolves each name in a folder that holds a journal
through it (the temporary file while it exists, else the final name; a stale file counts as absent), so it sees the new
checkpoint from the commit point on. A load records which file (device, inode, size, mtime) every name resolved to and,
once done, checks that each name still resolves to the same file; if a save committed in between, it loads again (up
to three times, then under a shared lock on the folder, which waits for a running save). Since every save writes
``config.json`` and every weight file anew, a commit during a load always changes a name the load read, and the loaded
model keeps its weight files mapped, so their inode numbers cannot be reused. A load that resolved a temporary file
may find it renamed to its final name when it opens it (same file, other path): every opening of a resolved path
(``open_settled``) then opens the final name, and a load that fails anyway while a name it resolved now resolves to
another path loads again, whatever its opener raised. A reader that finds a journal and can
take the lock without waiting (no save running, the folder writable) rolls it forward itself, and removes what saves
killed before their commit point left.

**transformers' own loaders** know no journal. They read old files until the first rename of step 4 and new ones after
the last; during step 4 (a few renames, milliseconds) they may see a mix, and after a save killed during step 4 they see
it until the next archit save or load into the folder completes the renames. Before step 3 they see the old checkpoint.

The lock is taken on the folder's own descriptor, so that no lock file is left in it; only where the file system cannot
lock a folder (NFS) does an empty ``.archit-lock`` serve instead, and stay (removing a lock file others may hold open is
unsafe). Without ``fcntl`` (Windows) there is no lock: saves are still crash-consistent, but concurrent saves are not
serialised.
"""
import contextlib
import contextvars
import ctypes
import ctypes.util
import json
import logging
import os
import secrets
import shutil
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar

try:
    import fcntl
except ImportError:  # Windows.
    fcntl = None  # type: ignore[assignment]

from .errors import CheckpointError

logger = logging.getLogger(__name__)

LOCK_NAME = ".archit-lock"
JOURNAL_NAME = ".archit-commit.json"
TEMP_PREFIX = ".archit-tmp-"
TEMP_SUFFIX = ".part"
_OPTIMISTIC_READS = 3
# ``write_chunks`` writes at most this many bytes per call and then starts their writeback (``start_writeback``).
WRITEBACK_CHUNK = 64 * 2**20
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>

T = TypeVar("T")
_Identity = Optional[Tuple[int, int, int, int]]
# The names a load resolved in local folders, and the file each resolved to (``read_consistently``).
_Observed = Dict[Tuple[str, str], Tuple[Optional[str], _Identity]]
_observed: contextvars.ContextVar[Optional[_Observed]] = contextvars.ContextVar(
    "archit_observed_files", default=None)


class DirectoryCommit:
    """
    One save into ``directory``, as a context manager: new files are written to ``temp_path(name)``, announced with
    ``written(name)``, and published together when the block ends without an exception (see the module docstring).
    ``remove_after_commit(names)`` lists the old checkpoint's files that the new one does not replace.
    """

    def __init__(self, directory: "os.PathLike[str] | str"):
        self.directory = os.fspath(directory)
        self.save_id = secrets.token_hex(4)
        self._files: Dict[str, str] = {}  # final name -> temporary name, in rename order
        self._stale: List[str] = []
        self._syncs: List[Future] = []
        self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archit-fsync")  # started on first use
        self._lock_fd: Optional[int] = None
        self._staging: Optional[str] = None

    def __enter__(self) -> "DirectoryCommit":
        os.makedirs(self.directory, exist_ok=True)
        self._lock_fd = _lock(self.directory, exclusive=True, blocking=True)
        try:
            _recover_locked(self.directory)
        except BaseException:
            _unlock(self._lock_fd)
            raise
        return self

    def temp_path(self, name: str) -> str:
        """Where to write the new file ``name``; it is renamed to ``name`` after the commit."""
        self._files.pop(name, None)  # Renamed in the order the files were announced.
        self._files[name] = f"{TEMP_PREFIX}{self.save_id}-{name}{TEMP_SUFFIX}"
        # The file this one replaces is on disk (fsynced by the save that wrote it): free its cached pages now, in the
        # background, for the new file's, instead of when the rename drops it.
        self._background(_drop_cached, os.path.join(self.directory, name))
        return os.path.join(self.directory, self._files[name])

    def temp_path_of(self, name: str) -> str:
        """Where the new file ``name`` is being written (``temp_path`` gave it)."""
        return os.path.join(self.directory, self._files[name])

    def staging_folder(self) -> str:
        """A folder of this save's own, in ``directory``, for writers that write under final names (transformers'
        ``save_pretrained``, safetensors' ``save_file``): what they write there is published with ``adopt``, and the
        folder is removed with the save's temporary files (or, after a kill, by the next save or load)."""
        if self._staging is None:
            self._staging = os.path.join(self.directory, f"{TEMP_PREFIX}{self.save_id}-staging{TEMP_SUFFIX}")
            os.mkdir(self._staging)
        return self._staging

    def adopt(self, name: str, path: str) -> None:
        """Publish the complete file ``path`` (in ``staging_folder()``) as the new file ``name``."""
        os.replace(path, self.temp_path(name))
        self.written(name)

    def written(self, name: str) -> None:
        """``name``'s temporary file is complete: fsync it in the background while the next one is written."""
        self._background(_fsync_file, os.path.join(self.directory, self._files[name]))

    def _background(self, function: Callable[..., None], *args: Any) -> None:
        """``function(*args)`` in the background thread, after what was queued before; the commit waits for it."""
        self._syncs.append(self._syncer.submit(function, *args))

    def create(self, name: str) -> int:
        """A descriptor of the new file ``name``'s temporary file, opened for writing; ``complete`` takes it back."""
        return os.open(self.temp_path(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)

    def complete(self, fd: int, finish: Optional[Callable[[], None]] = None) -> None:
        """The file ``create`` opened as ``fd`` is written: in the background, start the writeback of what is left,
        run ``finish()`` (which may complete the file: a checksum ``os.pwrite`` into its header), fsync and close it.
        Also after a failed write (with ``finish`` waiting for whatever still uses ``fd``)."""
        self._background(_finish_fsync_and_close, fd, finish)

    def write_chunks(self, name: str, chunks: Iterable[Any]) -> None:
        """Write the new file ``name`` from ``chunks`` (bytes-like objects, each written as it comes: a tensor's memory
        is not copied), and start the writeback of every ``WRITEBACK_CHUNK`` bytes as soon as they are written, so that
        the disk writes while the rest is written and the fsync (``written``) has little left to wait for."""
        fd = self.create(name)
        try:
            offset = started = 0
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                for start in range(0, len(view), WRITEBACK_CHUNK):
                    piece = view[start:start + WRITEBACK_CHUNK]
                    while piece:
                        written = os.write(fd, piece)
                        piece, offset = piece[written:], offset + written
                    if offset - started >= WRITEBACK_CHUNK:  # Started in the background: it may wait for the disk.
                        self._background(start_writeback, fd, started, offset - started)
                        started = offset
        except BaseException:
            self._background(os.close, fd)  # After the writebacks queued before, which use it.
            raise
        self.complete(fd)

    def write_text(self, name: str, text: str) -> None:
        with open(self.temp_path(name), "w", encoding="utf-8") as handle:
            handle.write(text)
        self.written(name)

    def remove_after_commit(self, names: List[str]) -> None:
        self._stale.extend(name for name in names if name not in self._files)

    def __exit__(self, exc_type, error, traceback) -> None:
        try:
            if error is None:
                self._commit()
            else:
                self._abandon(error)
        finally:
            self._syncer.shutdown(wait=True)
            _unlock(self._lock_fd)

    def _commit(self) -> None:
        journal = {"save_id": self.save_id, "files": self._files, "remove": self._stale}
        try:
            for sync in self._syncs:
                sync.result()
            _write_journal(self.directory, journal)
        except BaseException as error:
            self._abandon(error)
            raise
        self._remove_staging()
        replaced = _hold_replaced(self.directory, [*self._files, *self._stale])
        try:
            _roll_forward(self.directory, journal)
        except BaseException as error:
            _note(error, f"archit: the new checkpoint in '{self.directory}' is committed ({JOURNAL_NAME}); the next "
                         f"archit load or save there completes its renames.")
            raise
        finally:
            _release_later(replaced)

    def _abandon(self, error: BaseException) -> None:
        for temp in [*self._files.values(), _journal_temp(self.save_id)]:
            try:
                os.remove(os.path.join(self.directory, temp))
            except OSError:
                pass
        self._remove_staging()
        _note(error, f"archit: the save into '{self.directory}' failed before its commit point; the previous "
                     f"checkpoint there (if any) is intact.")


    def _remove_staging(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)


def resolve_local(folder: str, name: str) -> Optional[str]:
    """
    The path that holds ``name`` of a local checkpoint folder, as archit reads it: through a journal if the folder holds
    one (see the module docstring); ``None`` when absent. Raises ``CheckpointError`` when ``name`` exists but is not a
    file (a directory where ``config.json`` or a weight file should be). Inside ``read_consistently``, records which
    file the name resolved to.
    """
    journal = _read_journal(folder)
    if journal is not None and _try_recover(folder):
        journal = _read_journal(folder)
    path = _resolve(folder, name, journal)
    observed = _observed.get()
    if observed is not None:
        observed.setdefault((folder, name), (path, _identity(path)))
    return path


def settled_path(path: str) -> str:
    """The final name of a temporary file (renamed meanwhile), for a reader whose open found it gone."""
    folder, name = os.path.split(path)
    if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
        return os.path.join(folder, name[len(TEMP_PREFIX):-len(TEMP_SUFFIX)].split("-", 1)[1])
    return path


def open_settled(path: str, opener: Callable[[str], T]) -> T:
    """``opener(path)``; once more with the final name if it failed and the temporary file ``path`` is gone (a save
    renamed it meanwhile), whatever the opener raised for the vanished file."""
    try:
        return opener(path)
    except Exception:
        # A vanished file is a FileNotFoundError, a CheckpointError raised from one, or torch's RuntimeError "unable to
        # open file ... No such file or directory" inside safe_open: ask the file system, not the error.
        if settled_path(path) == path or os.path.lexists(path):
            raise
        return opener(settled_path(path))


def _not_found(error: BaseException) -> bool:
    """Whether ``error`` says a file was not there: a ``FileNotFoundError``, or an error raised from one (archit's
    readers report unreadable files as ``CheckpointError``s naming the file)."""
    return isinstance(error, FileNotFoundError) or isinstance(error.__cause__, FileNotFoundError)


def read_consistently(folder: Optional[str], read: Callable[[], T]) -> T:
    """
    ``read()`` (a load from the local folder ``folder``), with the guarantee that the files it read all belong to one
    checkpoint: if a save into the folder committed while it ran, it runs again, and after three such tries once more
    under a shared lock, which waits for the running save. A folder that is not local (a hub id) reads once.
    """
    if folder is None or not os.path.isdir(folder):
        return read()
    _recover_if_idle(folder)
    for attempt in range(_OPTIMISTIC_READS):
        observed: _Observed = {}
        token = _observed.set(observed)
        try:
            result = read()
        except Exception as error:
            # A file gone between resolving its name and opening it was renamed or removed by a save: read again. A
            # temporary file renamed to its final name keeps its identity, so a failed read also retries when a name
            # now resolves to another path, whatever the opener raised for the vanished one.
            if _not_found(error) or _changed(observed, compare_paths=True):
                logger.info("A save into '%s' committed while loading from it: loading again.", folder)
                continue
            raise
        finally:
            _observed.reset(token)
        if not _changed(observed):
            return result
        logger.info("A save into '%s' committed while loading from it: loading again.", folder)
    try:
        lock_fd = _lock(folder, exclusive=False, blocking=True)
    except OSError as error:  # A folder that can be neither locked nor hold a lock file (read-only NFS).
        logger.debug("Cannot lock '%s' for reading (%s): reading without the lock.", folder, error)
        lock_fd = None
    try:
        return read()
    finally:
        _unlock(lock_fd)


# Internals


def _resolve(folder: str, name: str, journal: Optional[Dict[str, Any]]) -> Optional[str]:
    if journal is not None:
        if name in journal["files"]:
            temp = os.path.join(folder, journal["files"][name])
            if os.path.isfile(temp):
                return temp
        elif name in journal["remove"]:
            return None
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return None
    if not os.path.isfile(path):
        raise CheckpointError(path, "is not a file (a directory, or another kind of file system entry)")
    return path


def _identity(path: Optional[str]) -> _Identity:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _changed(observed: _Observed, compare_paths: bool = False) -> bool:
    """Whether any name a load resolved now resolves to another file (or appeared, or went); with ``compare_paths``,
    also to the same file under another path: a temporary file the save has since renamed to its final name (the
    identity stays, but the path the load held is gone)."""
    for (folder, name), (path, identity) in observed.items():
        try:
            now = _resolve(folder, name, _read_journal(folder))
        except CheckpointError:
            return True
        if _identity(now) != identity or (compare_paths and now != path):
            return True
    return False


def _read_journal(folder: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(folder, JOURNAL_NAME)
    try:
        with open(path, encoding="utf-8") as handle:
            journal = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CheckpointError(path, f"cannot be read ({error}); it is archit's journal of an interrupted save: "
                                    f"remove it if you know which checkpoint the folder should hold") from error
    if not (isinstance(journal, dict) and isinstance(journal.get("files"), dict)
            and isinstance(journal.get("remove"), list)):
        raise CheckpointError(path, "is not a journal archit wrote (it needs 'files' and 'remove')")
    return journal


def _journal_temp(save_id: str) -> str:
    return f"{TEMP_PREFIX}{save_id}-{JOURNAL_NAME}{TEMP_SUFFIX}"


def _write_journal(folder: str, journal: Dict[str, Any]) -> None:
    temp = os.path.join(folder, _journal_temp(journal["save_id"]))
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(journal, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, os.path.join(folder, JOURNAL_NAME))
    _fsync_directory(folder)


def _roll_forward(folder: str, journal: Dict[str, Any]) -> None:
    """Complete a committed save: rename, delete the stale files, delete the journal. Idempotent."""
    for name, temp in journal["files"].items():
        try:
            os.replace(os.path.join(folder, temp), os.path.join(folder, name))
        except FileNotFoundError:
            pass  # Renamed before (a journal rolled forward again after a crash).
    _fsync_directory(folder)
    for name in journal["remove"]:
        try:
            os.remove(os.path.join(folder, name))
        except FileNotFoundError:
            pass
    os.remove(os.path.join(folder, JOURNAL_NAME))
    _fsync_directory(folder)


def _recover_locked(folder: str) -> None:
    """With the exclusive lock held: complete a committed save, remove what saves that never committed left."""
    journal = _read_journal(folder)
    if journal is not None:
        logger.warning("'%s' holds the journal of a save that was interrupted after its commit point: completing it.",
                       folder)
        _roll_forward(folder, journal)
    for name in os.listdir(folder):
        if name.startswith(TEMP_PREFIX):
            logger.info("Removing '%s' in '%s', left by a save that did not commit.", name, folder)
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)


def _recover_if_idle(folder: str) -> None:
    """Before a load: complete an interrupted save and remove the temporary files of saves killed before their commit
    point, if the folder holds any and no save is running (``_try_recover``)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    if any(name == JOURNAL_NAME or name.startswith(TEMP_PREFIX) for name in names):
        _try_recover(folder)


def _try_recover(folder: str) -> bool:
    """Roll a leftover journal forward and remove orphaned temporary files, if no save is running (the lock is free)
    and the folder is writable; ``True`` if done."""
    try:
        lock_fd = _lock(folder, exclusive=True, blocking=False)
    except OSError:
        return False
    if lock_fd is None:
        return False
    try:
        _recover_locked(folder)
        return True
    except OSError as error:  # A read-only folder: readers resolve through the journal.
        logger.debug("Could not complete the interrupted save in '%s': %s", folder, error)
        return False
    finally:
        _unlock(lock_fd)


@contextlib.contextmanager
def exclusive_lock(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` (created if missing, and left in place: removing a lock file
    that others may hold open is unsafe) for the block, waiting for other holders. Without ``fcntl`` (Windows), no lock.
    For folders that are made and removed whole (``archit matrix``'s environments), which cannot lock themselves."""
    if fcntl is None:
        yield
        return
    fd = _flocked(os.open(path, os.O_RDWR | os.O_CREAT, 0o666), fcntl.LOCK_EX)
    try:
        yield
    finally:
        _unlock(fd)


def _lock(folder: str, exclusive: bool, blocking: bool) -> Optional[int]:
    """An open descriptor of ``folder`` itself, ``flock``ed; ``None`` without ``fcntl``, or when ``blocking`` is false
    and another process holds the lock. Where a folder cannot be locked (NFS emulates ``flock`` with POSIX locks, which
    an exclusive lock needs a file opened for writing for), the lock file ``.archit-lock`` in it is locked instead."""
    if fcntl is None:
        return None
    operation = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
    fd = os.open(folder, os.O_RDONLY)
    try:
        return _flocked(fd, operation)
    except OSError as error:
        logger.debug("Cannot lock the folder '%s' (%s): locking %s in it.", folder, error, LOCK_NAME)
    return _flocked(os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o666), operation)


def _flocked(fd: int, operation: int) -> Optional[int]:
    """``fd`` once ``flock``ed with ``operation``; ``None`` (``fd`` closed) when a non-blocking lock is held elsewhere.
    Closed before any other error propagates."""
    try:
        fcntl.flock(fd, operation)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise


def _unlock(fd: Optional[int]) -> None:
    if fd is not None:
        os.close(fd)  # Closing the descriptor releases the flock.


def _libc_sync_file_range() -> Optional[Callable[..., int]]:
    """Linux's ``sync_file_range`` through ctypes; ``None`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _libc_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing ``length`` bytes of ``fd`` from ``offset`` back to the disk, without waiting (Linux); elsewhere,
    or where the file system refuses, nothing: the fsync after the file is complete writes everything anyway."""
    global _sync_file_range
    if _sync_file_range is not None and _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE) != 0:
        logger.debug("sync_file_range failed (%s): no early writeback.", os.strerror(ctypes.get_errno()))
        _sync_file_range = None


def _hold_replaced(folder: str, names: List[str]) -> List[int]:
    """Open descriptors of the existing files ``names`` (POSIX, local file systems), so that renaming over them or
    removing them does not free their blocks (~0.1 s per 500 MB, inside the rename): that happens when
    ``_release_later`` closes the descriptors in the background, after the save has returned. The files have no name in
    the folder by then; if the process dies first, the kernel (or, after a crash, the file system's orphan list) frees
    them. Not on Windows (a rename over an open file fails) nor on NFS (it keeps an open file's name as ``.nfsXXXX``)."""
    if os.name != "posix" or not _local_file_system(folder):
        return []
    held = []
    for name in names:
        try:
            held.append(os.open(os.path.join(folder, name), os.O_RDONLY))
        except OSError:
            pass
    return held


def _release_later(fds: List[int]) -> None:
    global _releaser
    if not fds:
        return
    if _releaser is None:
        _releaser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archit-release")
    for fd in fds:
        _releaser.submit(os.close, fd)


_releaser: Optional[ThreadPoolExecutor] = None


def _forget_releaser() -> None:
    """In a forked child: the parent's release thread does not exist there, so a new one is needed."""
    global _releaser
    _releaser = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_releaser)
# File systems where an open file renamed over or removed loses its name at once (``_hold_replaced``).
_LOCAL_FILE_SYSTEMS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "tmpfs", "zfs", "bcachefs", "jfs", "reiserfs"}


def _local_file_system(folder: str) -> bool:
    """Whether ``folder`` is on a file system in ``_LOCAL_FILE_SYSTEMS`` (its mount point the longest in
    ``/proc/self/mounts`` that contains it); ``False`` where that cannot be told."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as handle:
            mounts = [line.split()[1:3] for line in handle]
    except OSError:
        return False
    path = os.path.realpath(folder)
    best, kind = "", None
    for point, fs_type in mounts:
        point = point.replace("\\040", " ")
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fs_type
    return kind in _LOCAL_FILE_SYSTEMS


def _drop_cached(path: str) -> None:
    """Drop the cached pages of ``path`` (if it exists) that are written back and not mapped (``POSIX_FADV_DONTNEED``;
    dirty pages are only queued for writeback); a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    _fsync_and_close(os.open(path, os.O_RDONLY))


def _fsync_and_close(fd: int) -> None:
    _finish_fsync_and_close(fd, None)


def _finish_fsync_and_close(fd: int, finish: Optional[Callable[[], None]]) -> None:
    try:
        if finish is not None:
            start_writeback(fd, 0, 0)  # The disk writes the rest (to the end) while ``finish`` waits (for a checksum).
            finish()
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(folder: str) -> None:
    """Make renames and deletions in ``folder`` durable (a no-op where directories cannot be opened: Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # Some file systems refuse fsync on a directory (EINVAL): nothing more can be done there.
        pass
    finally:
        os.close(fd)


def _note(error: BaseException, note: str) -> None:
    if hasattr(error, "add_note"):  # Python >= 3.11
        error.add_note(note)
    logger.warning(note)
