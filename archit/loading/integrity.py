"""Checksums of weight files, beyond what transformers and safetensors offer: safetensors has none, so a bit flipped in
tensor data loads silently. archit writes a SHA-256 per weight file into metadata it already owns, where transformers
and safetensors read the file unchanged:

- a safetensors file (single file, shard, ``head.safetensors``): ``__metadata__["archit_sha256"]``, covering the
  file's header as canonical JSON without that entry (keys sorted, no spaces, UTF-8) and the file's data (every byte
  after the header): every tensor's bytes, dtype, shape and offsets, and the other metadata;
- a ``.bin`` shard: the index's ``metadata["archit_sha256"]`` (shard file name -> checksum), covering the whole file.
  A single ``.bin`` file has no place for one.

The checksum is SHA-256 over pieces, so that several cores hash one file at once (one core hashes ~1.6 GB/s with the
CPU's SHA instructions, slower than a save writes): the bytes (the data, or the whole ``.bin`` file) are cut into pieces
of ``PIECE_BYTES`` (8 MiB; the last may be shorter), and the checksum is the hex SHA-256 of the canonical header (empty
for a ``.bin`` file) followed by the 32-byte SHA-256 digest of each piece, in order. In Python::

    digests = b"".join(hashlib.sha256(data[i:i + 2**23]).digest() for i in range(0, len(data), 2**23))
    checksum = hashlib.sha256(canonical_header + digests).hexdigest()

``verify_checkpoint`` (``archit verify``, ``from_pretrained(..., verify=True)``) recomputes them; files without one (any
checkpoint transformers or the published ArchIt wrote) get their structure checked only, and the answer says so.
Computing a checksum while writing is ``saving.py``'s part.
"""
import hashlib
import json
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .commits import open_settled, read_consistently, resolve_local
from .errors import CheckpointError
from .files import (
    CONFIG_NAME,
    HEAD_CONFIG_NAME,
    HEAD_WEIGHTS_NAME,
    check_safetensors_header,
    checkpoint_name,
    find_weights,
    is_safetensors,
    read_config_dict,
    read_json_file,
    read_tensor_headers,
    shards_of_index,
)

logger = logging.getLogger(__name__)

DIGEST_KEY = "archit_sha256"
DIGEST_PLACEHOLDER = "0" * 64
"""Written first where the digest goes; the digest, of the same length, replaces it once the data is written."""
PIECE_BYTES = 8 * 2**20
_HASHING_THREADS = max(2, os.cpu_count() or 1)


def hashing_pool() -> ThreadPoolExecutor:
    """Threads for hashing pieces (``hashlib`` releases the GIL while it hashes)."""
    return ThreadPoolExecutor(max_workers=_HASHING_THREADS, thread_name_prefix="archit-hash")


PieceWriter = Callable[[List[memoryview], int], None]
"""Writes a piece (its bytes, as views) at an offset of the stream, before it is hashed."""


def _piece_digest(views: List[memoryview], write: Optional[PieceWriter], offset: int) -> bytes:
    if write is not None:
        write(views, offset)
    digest = hashlib.sha256()
    for view in views:
        digest.update(view)
    return digest.digest()


class PieceDigest:
    """The checksum of a byte stream given in order (``update``), its pieces hashed on ``pool``'s threads as they fill:
    ``hexdigest()`` waits for them. With ``write``, each piece is first written by the thread that hashes it
    (``write(views, offset)``, the offset counted from the stream's start): writing and hashing run on every core, and
    each piece is hashed while its bytes are still in the CPU's caches. The bytes given must stay unchanged until
    ``wait()`` (tensor memory, or blocks read from a file); no copy is made."""

    def __init__(self, prefix: bytes, pool: ThreadPoolExecutor, write: Optional[PieceWriter] = None):
        self._prefix, self._pool, self._write = prefix, pool, write
        self._pieces: List[Future] = []
        self._current: List[memoryview] = []
        self._filled = 0
        self._offset = 0

    def update(self, chunk: Any) -> None:
        view = memoryview(chunk).cast("B")
        while len(view):
            take = min(len(view), PIECE_BYTES - self._filled)
            self._current.append(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == PIECE_BYTES:
                self._submit()

    def pending(self) -> int:
        """Pieces submitted and not hashed yet."""
        return sum(not piece.done() for piece in self._pieces)

    def wait_below(self, pieces: int) -> None:
        """Wait until fewer than ``pieces`` pieces wait to be hashed (bounds the memory held for them)."""
        while self.pending() >= pieces:
            next(piece for piece in self._pieces if not piece.done()).result()

    def end(self) -> None:
        """The stream is complete: hash its last piece."""
        if self._filled:
            self._submit()

    def wait(self) -> None:
        """Wait until every piece given so far is written and hashed (also when one failed: the first error is raised
        once all are done)."""
        errors = [piece.exception() for piece in self._pieces]
        error = next((e for e in errors if e is not None), None)
        if error is not None:
            raise error

    def hexdigest(self) -> str:
        """The checksum (``end()`` first)."""
        self.wait()
        return hashlib.sha256(self._prefix + b"".join(piece.result() for piece in self._pieces)).hexdigest()

    def _submit(self) -> None:
        self._pieces.append(self._pool.submit(_piece_digest, self._current, self._write, self._offset))
        self._offset += self._filled
        self._current, self._filled = [], 0


def canonical_header(header: Dict[str, Any]) -> bytes:
    """What a safetensors file's checksum covers of its header (``header``, parsed): the header without the checksum
    entry, as canonical JSON."""
    covered = {key: value for key, value in header.items() if key != "__metadata__"}
    if "__metadata__" in header:
        covered["__metadata__"] = {k: v for k, v in header["__metadata__"].items() if k != DIGEST_KEY}
    return json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def stored_digest(header: Dict[str, Any]) -> Optional[str]:
    """The checksum a safetensors header carries, or ``None``."""
    return (header.get("__metadata__") or {}).get(DIGEST_KEY)


def damaged_digest_name(entries: Dict[str, Any]) -> Optional[str]:
    """The name of an entry of ``entries`` (a header's ``__metadata__``, an index's ``metadata``) that is
    ``archit_sha256`` with one character changed (a flipped bit) while its value still has the form of a checksum:
    without this, such a file would read as one that never had a checksum."""
    if DIGEST_KEY in entries:
        return None
    for name, value in entries.items():
        if isinstance(name, str) and len(name) == len(DIGEST_KEY) \
                and sum(a != b for a, b in zip(name, DIGEST_KEY)) == 1 and _looks_like_checksums(value):
            return name
    return None


def _looks_like_checksums(value: Any) -> bool:
    """A checksum (64 hexadecimal digits, give or take a damaged one), or a map of file names to checksums."""
    if isinstance(value, dict):
        return bool(value) and all(_looks_like_checksums(v) for v in value.values())
    return isinstance(value, str) and len(value) == 64


def safetensors_digest(path: str) -> Tuple[Optional[str], str]:
    """``(stored, computed)``: the checksum in the safetensors file's header (``None`` without one) and the one its
    contents have now. Raises ``CheckpointError`` when the header is damaged."""
    header = open_settled(path, check_safetensors_header)
    with open_settled(path, lambda p: open(p, "rb")) as handle:
        length = int.from_bytes(handle.read(8), "little")
        handle.seek(8 + length)
        return stored_digest(header), _digest_rest(handle, canonical_header(header))


def file_digest(path: str) -> str:
    """The checksum of a whole file (a ``.bin`` shard's)."""
    with open_settled(path, lambda p: open(p, "rb")) as handle:
        return _digest_rest(handle, b"")


def _digest_rest(handle: Any, prefix: bytes) -> str:
    """The checksum of what is left to read of ``handle``, after ``prefix``: pieces read in turn, hashed on all cores."""
    with hashing_pool() as pool:
        digest = PieceDigest(prefix, pool)
        for block in iter(lambda: handle.read(PIECE_BYTES), b""):
            digest.wait_below(2 * _HASHING_THREADS)
            digest.update(block)
        digest.end()
        return digest.hexdigest()


@dataclass(frozen=True)
class FileCheck:
    """What verifying one file of a checkpoint found."""
    name: str
    """The file's name in the checkpoint folder."""
    status: str
    """``"verified"`` (a weight file whose checksum matches), ``"unverified"`` (a weight file without a checksum: its
    structure is sound, its tensor data could not be checked), ``"checked"`` (a file that is all structure, such as
    ``config.json`` or an index: it is sound) or ``"damaged"``."""
    message: str
    error: Optional[CheckpointError] = None
    """What is wrong with a damaged file."""

    @classmethod
    def of_error(cls, error: CheckpointError) -> "FileCheck":
        return cls(checkpoint_name(error.path), "damaged", str(error), error)

    @property
    def damaged(self) -> bool:
        return self.status == "damaged"


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify_checkpoint`` found, file by file."""
    checkpoint: str
    files: Tuple[FileCheck, ...]

    @property
    def damaged(self) -> List[FileCheck]:
        return [check for check in self.files if check.damaged]

    @property
    def unverified(self) -> List[FileCheck]:
        return [check for check in self.files if check.status == "unverified"]

    @property
    def ok(self) -> bool:
        return not self.damaged

    def summary(self) -> str:
        """One line: damaged, fully verified, or sound in structure with its data unchecked."""
        if self.damaged:
            return (f"'{self.checkpoint}' is damaged: "
                    + "; ".join(f"{check.message}" for check in self.damaged))
        if self.unverified:
            weights = [check for check in self.files if check.status in ("verified", "unverified")]
            return (f"'{self.checkpoint}': structure sound; {len(self.unverified)} of {len(weights)} weight files carry "
                    f"no checksum (written by transformers, the published ArchIt or an archit without checksums), so "
                    f"their tensor data could not be checked")
        return f"'{self.checkpoint}': every checksum matches, every file is sound ({len(self.files)} files)"


def verify_weight_files(paths: List[str], index_path: Optional[str]) -> List[FileCheck]:
    """Check the weight files ``paths`` (resolved, as ``find_weight_files`` gives them) and their index, if any:
    checksums where the files carry them, and their structure (headers, the index against the shards' keys)."""
    index = read_json_file(index_path) if index_path is not None else None
    if index_path is not None:
        shards_of_index(index_path)  # The index's own structure.
    index_metadata = (index or {}).get("metadata") or {}
    if isinstance(index_metadata, dict) and damaged_digest_name(index_metadata) is not None:
        raise CheckpointError(str(index_path), f"is damaged: its checksums' entry is named "
                                          f"{damaged_digest_name(index_metadata)!r}, not {DIGEST_KEY!r}")
    bin_digests = index_metadata.get(DIGEST_KEY) or {} if isinstance(index_metadata, dict) else {}
    checks = []
    for path in paths:
        try:
            checks.append(_verify_weight_file(path, bin_digests))
        except CheckpointError as error:
            checks.append(FileCheck.of_error(error))
    if index_path is not None and not any(check.damaged for check in checks):
        checks.append(_verify_index(index_path, index or {}, paths))
    return checks


def _verify_weight_file(path: str, bin_digests: Dict[str, str]) -> FileCheck:
    name = checkpoint_name(path)
    if is_safetensors(path):
        stored, computed = safetensors_digest(path)
        read_tensor_headers([path])  # safetensors' own reading of the header
        damaged_name = damaged_digest_name(open_settled(path, check_safetensors_header).get("__metadata__") or {})
        if damaged_name is not None:
            raise CheckpointError(path, f"is damaged: its checksum's entry is named {damaged_name!r}, not "
                                        f"{DIGEST_KEY!r}")
        if stored is None:
            return FileCheck(name, "unverified", f"{name}: structure sound; no checksum, tensor data not checked")
    else:
        stored = bin_digests.get(name)
        if stored is None:
            read_tensor_headers([path])  # The pickle, its storages mapped onto the meta device.
            return FileCheck(name, "unverified", f"{name}: structure sound; no checksum (a .bin file has one only in "
                                                 f"the index of a sharded save), tensor data not checked")
        computed = file_digest(path)  # First: a damaged pickle is then named as damaged, not as unreadable.
        if computed == stored:
            read_tensor_headers([path])
    if computed != stored:
        raise CheckpointError(path, f"is damaged: its contents do not match its SHA-256 checksum (stored {stored[:12]}..., "
                                    f"now {computed[:12]}...): bits of its tensor data or header changed since archit "
                                    f"wrote it")
    return FileCheck(name, "verified", f"{name}: checksum matches")


def _verify_index(index_path: str, index: Dict[str, Any], paths: List[str]) -> FileCheck:
    """The index names every tensor of the shards, each in the shard that holds it."""
    name = checkpoint_name(index_path)
    headers = read_tensor_headers(paths)
    weight_map = index["weight_map"]
    for key, header in headers.items():
        if weight_map.get(key) != checkpoint_name(header.path):
            return FileCheck.of_error(CheckpointError(
                index_path, f"does not match the shards: {checkpoint_name(header.path)} holds the tensor, the index "
                            f"says {weight_map.get(key)!r}", key=f"weight_map.{key}"))
    unknown = sorted(set(weight_map) - set(headers))
    if unknown:
        return FileCheck.of_error(CheckpointError(
            index_path, f"names {len(unknown)} tensor(s) that no shard holds", key=f"weight_map.{unknown[0]}"))
    return FileCheck(name, "checked", f"{name}: names exactly the shards' tensors")


def verify_checkpoint(checkpoint: str, variant: Optional[str] = None) -> VerifyReport:
    """Verify a local checkpoint folder (an archit or transformers checkpoint, or a head written by ``saveHead``):
    ``config.json`` (or ``head_config.json``) read, every weight file's checksum recomputed where it has one, and the
    structure of the rest checked. Raises ``OSError`` when the folder is no checkpoint at all."""
    folder = os.fspath(checkpoint)
    if not os.path.isdir(folder):
        raise OSError(f"'{folder}' is not a checkpoint folder: no such folder.")
    return read_consistently(folder, lambda: _verify(folder, variant))


def _verify(folder: str, variant: Optional[str]) -> VerifyReport:
    checks: List[FileCheck] = []
    head_config = resolve_local(folder, HEAD_CONFIG_NAME)
    if head_config is not None and resolve_local(folder, CONFIG_NAME) is None:
        head_weights = resolve_local(folder, HEAD_WEIGHTS_NAME)
        if head_weights is None:
            raise CheckpointError(os.path.join(folder, HEAD_WEIGHTS_NAME), "is missing (saveHead writes it next to "
                                                                            f"{HEAD_CONFIG_NAME})")
        config_name, weight_paths, index_path = HEAD_CONFIG_NAME, [head_weights], None
        checks.append(_checked_json(head_config))
    else:
        config_name = CONFIG_NAME
        try:
            read_config_dict(folder)
            checks.append(FileCheck(CONFIG_NAME, "checked", f"{CONFIG_NAME}: a JSON object"))
        except CheckpointError as error:
            checks.append(FileCheck.of_error(error))
        weights = find_weights(folder, variant=variant)
        weight_paths, index_path = weights.paths, weights.index
    logger.debug("Verifying %s and %d weight file(s) in '%s'.", config_name, len(weight_paths), folder)
    checks.extend(verify_weight_files(weight_paths, index_path))
    return VerifyReport(folder, tuple(checks))


def _checked_json(path: str) -> FileCheck:
    name = checkpoint_name(path)
    try:
        read_json_file(path)
        return FileCheck(name, "checked", f"{name}: JSON")
    except CheckpointError as error:
        return FileCheck.of_error(error)
