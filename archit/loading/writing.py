"""Writing weight files into a save (``commits.DirectoryCommit``), each with its checksum (``integrity.py``) computed
while it is written.

archit writes safetensors files itself: the bytes ``safetensors.torch.save_file`` writes for the same tensors and
metadata (byte for byte, tested with hypothesis), produced in pieces, so that their writeback starts while the rest is
written (``DirectoryCommit.write_chunks``) and so that their data is hashed on a second thread as it goes by. The header
is written with a placeholder where the checksum goes (``DIGEST_PLACEHOLDER``, as long as the digest); once the data is
written and hashed, the digest overwrites it, before the file is fsynced. Tensors ``write_chunks`` cannot write (a dtype
the installed safetensors lacks, a tensor not in dense CPU memory, a big-endian machine) go through ``save_file`` into a
staging file first, and are then copied with their checksum, as are the files transformers' own ``save_pretrained``
writes for archit (``adopt_staged``).
"""
import json
import os
import struct
import sys
from concurrent.futures import Future
from typing import Any, Dict, Iterable, Iterator, List, Optional

import safetensors.torch
import torch
from safetensors.torch import save_file
from torch import Tensor

from .commits import DirectoryCommit, start_writeback
from .files import (
    CONFIG_NAME,
    SAFETENSORS_DTYPES,
    check_safetensors_header,
    named_dtype,
    read_json_file,
    weight_file_variant,
)
from .integrity import (
    DIGEST_KEY,
    DIGEST_PLACEHOLDER,
    PIECE_BYTES,
    PieceDigest,
    canonical_header,
    file_digest,
    hashing_pool,
)

# The dtypes archit writes itself (torch's dtype -> safetensors' name), in safetensors' order of them
# (``files.SAFETENSORS_DTYPES``): it stores tensors by dtype, the last of this list first, then by name. Only those the
# installed torch and safetensors both have (older releases lack float8 and unsigned 16-64 bit), complex64 excepted (the
# writer never took it on): the others go through save_file, which raises for them or writes them as it does.
_INSTALLED_DTYPES = getattr(safetensors.torch, "_TYPES", {})
WRITTEN_DTYPES = {_INSTALLED_DTYPES[name]: name for name, (torch_name, _) in SAFETENSORS_DTYPES.items()
                  if name != "C64" and name in _INSTALLED_DTYPES and _INSTALLED_DTYPES[name] == named_dtype(torch_name)}
_SAFETENSORS_RANK = {dtype: rank for rank, dtype in enumerate(WRITTEN_DTYPES)}
_HASH_QUEUE = 8


def tensor_nbytes(tensor: Tensor) -> int:
    return tensor.numel() * tensor.element_size()


class SafetensorsLayout:
    """A safetensors file for ``tensors``, as ``save_file(tensors, path, metadata)`` writes it: ``header`` (parsed) and
    the tensors in the order of their data."""

    def __init__(self, header: Dict[str, Any], order: List[str], tensors: Dict[str, Tensor]):
        self.header, self.order, self.tensors = header, order, tensors

    @classmethod
    def of(cls, tensors: Dict[str, Tensor], metadata: Optional[Dict[str, str]]) -> Optional["SafetensorsLayout"]:
        """``None`` where ``save_file`` is needed: a dtype not in ``WRITTEN_DTYPES``, a tensor that is not a dense
        CPU tensor, a big-endian machine (save_file byte-swaps), no tensor but metadata (safetensors 0.4-0.8 write a
        header that is not JSON then). Metadata entries are written in their order (safetensors writes them in the
        order of a Rust hash map: the files are the same bytes as save_file's when there is at most one entry)."""
        if sys.byteorder != "little" or (not tensors and metadata is not None) or not all(
                tensor.dtype in WRITTEN_DTYPES and tensor.device.type == "cpu" and tensor.layout == torch.strided
                and tensor.is_contiguous() for tensor in tensors.values()):
            return None
        order = sorted(tensors, key=lambda key: (-_SAFETENSORS_RANK[tensors[key].dtype], key.encode("utf-8")))
        header: Dict[str, Any] = {} if metadata is None else {"__metadata__": dict(metadata)}
        offset = 0
        for key in order:
            tensor = tensors[key]
            header[key] = {"dtype": WRITTEN_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                           "data_offsets": [offset, offset + tensor_nbytes(tensor)]}
            offset += tensor_nbytes(tensor)
        return cls(header, order, tensors)

    def data(self) -> Iterator[Any]:
        """Each tensor's bytes, in file order: its own memory, not copied."""
        for key in self.order:
            if self.tensors[key].numel():
                yield self.tensors[key].detach().reshape(-1).view(torch.uint8).numpy()

    def chunks(self) -> Iterator[Any]:
        """The whole file."""
        yield header_bytes(self.header)
        yield from self.data()


def header_bytes(header: Dict[str, Any]) -> bytes:
    """The 8-byte length and the header of a safetensors file, as safetensors writes them (compact JSON, padded with
    spaces to a multiple of 8 bytes)."""
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


class WeightWriter:
    """
    Writes the weight files of one save into ``commit``, each with its checksum: safetensors files (``safetensors``)
    with it in their header, ``.bin`` files (``bin``) with it in what ``index_metadata()`` gives for the index. Hashing
    runs on threads of its own (``integrity.hashing_pool``), alongside the writing; a file's fsync waits for its
    checksum. Use as a context manager inside the ``DirectoryCommit`` block.
    """

    def __init__(self, commit: DirectoryCommit):
        self.commit = commit
        self._hashing = hashing_pool()
        self._bin_digests: Dict[str, Future] = {}

    def __enter__(self) -> "WeightWriter":
        return self

    def __exit__(self, *exc) -> None:
        self._hashing.shutdown(wait=True)

    def safetensors(self, name: str, tensors: Dict[str, Tensor], metadata: Optional[Dict[str, str]] = None) -> None:
        """Write ``tensors`` as the safetensors file ``name`` with ``metadata`` and the checksum."""
        layout = SafetensorsLayout.of(tensors, {**(metadata or {}), DIGEST_KEY: DIGEST_PLACEHOLDER})
        if layout is None:
            staged = os.path.join(self.commit.staging_folder(), name)
            save_file(tensors, staged, metadata=metadata)
            self._copy_safetensors(name, staged)
            return
        self._write_with_digest(name, layout.header, layout.data())

    def bin(self, name: str, tensors: Dict[str, Tensor]) -> None:
        """Write ``tensors`` with ``torch.save`` as the file ``name``; its checksum is hashed from the written file."""
        path = self.commit.temp_path(name)
        torch.save(tensors, path)
        self.commit.written(name)
        self._bin_digests[name] = self._hashing.submit(file_digest, path)

    def index_metadata(self) -> Dict[str, Any]:
        """What the index's ``metadata`` gets besides ``total_size``: the checksums of the ``.bin`` shards."""
        if not self._bin_digests:
            return {}
        return {DIGEST_KEY: {name: digest.result() for name, digest in sorted(self._bin_digests.items())}}

    def adopt_staged(self, staging: str) -> None:
        """Publish with this save the files another writer (transformers' ``save_pretrained``) wrote into ``staging``
        (``commit.staging_folder()``): safetensors files copied with their checksum, ``.bin`` shards with theirs in the
        index, the others as they are; ``config.json`` last."""
        names = sorted(os.listdir(staging), key=lambda n: (n == CONFIG_NAME, not _is_weights(n), n))
        for name in names:
            path = os.path.join(staging, name)
            if not os.path.isfile(path):
                raise OSError(f"'{path}': a save wrote a folder into the checkpoint, which archit does not publish.")
            if name.endswith(".safetensors"):
                self._copy_safetensors(name, path)
            elif name.endswith(".index.json") and _is_weights(name) and self._bin_digests:
                index = read_json_file(path)
                index.setdefault("metadata", {}).update(self.index_metadata())
                self.commit.write_text(name, json.dumps(index, indent=2, sort_keys=True) + "\n")
                os.remove(path)
            else:
                self.commit.adopt(name, path)
                if name.endswith(".bin") and _is_weights(name):
                    self._bin_digests[name] = self._hashing.submit(file_digest, self.commit.temp_path_of(name))

    def _copy_safetensors(self, name: str, staged: str) -> None:
        """Copy the safetensors file ``staged`` as ``name``, with the checksum in its header; remove ``staged``."""
        header = check_safetensors_header(staged)
        header.setdefault("__metadata__", {})[DIGEST_KEY] = DIGEST_PLACEHOLDER
        with open(staged, "rb") as handle:
            handle.seek(8 + int.from_bytes(handle.read(8), "little"))
            self._write_with_digest(name, header, iter(lambda: handle.read(PIECE_BYTES), b""), bounded=True)
        os.remove(staged)

    def _write_with_digest(self, name: str, header: Dict[str, Any], data: Iterable[Any], bounded: bool = False) -> None:
        """Write the safetensors file ``name``: ``header`` (holding ``DIGEST_PLACEHOLDER`` as the checksum) and then
        ``data``, cut into pieces that the hashing threads each write (``os.pwrite`` at their offset; their writeback
        started at once) and hash; the checksum then replaces the placeholder, before the file is fsynced.
        ``bounded``: ``data`` is read into memory for this (blocks of a file), so reading waits while more than a few
        pieces wait to be written."""
        prefix = header_bytes(header)
        marker = f'"{DIGEST_KEY}":"'.encode()
        offset = prefix.index(marker + DIGEST_PLACEHOLDER.encode()) + len(marker)
        fd = self.commit.create(name)

        def write_piece(views: List[memoryview], start: int) -> None:
            position = len(prefix) + start
            for view in views:
                while len(view):
                    written = os.pwrite(fd, view, position)
                    view, position = view[written:], position + written
            start_writeback(fd, len(prefix) + start, position - len(prefix) - start)

        digest = PieceDigest(canonical_header(header), self._hashing, write=write_piece)
        try:
            os.pwrite(fd, prefix, 0)
            for chunk in data:
                if bounded:
                    digest.wait_below(_HASH_QUEUE)
                digest.update(chunk)
            digest.end()
        except BaseException:
            self.commit.complete(fd, digest.wait)  # Closed once no piece writes to it any more.
            raise
        self.commit.complete(fd, lambda: _write_at(fd, digest.hexdigest().encode("ascii"), offset))


def _is_weights(name: str) -> bool:
    return weight_file_variant(name)[0]


def _write_at(fd: int, data: bytes, offset: int) -> None:
    os.pwrite(fd, data, offset)
