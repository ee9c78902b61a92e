"""What makes saves fast, checked for what it must not change:

* archit writes safetensors files itself (``writing.SafetensorsLayout`` through ``DirectoryCommit.write_chunks``,
  which starts the writeback of each written range early): its files must be byte for byte those of
  ``safetensors.torch.save_file`` for the same tensors and metadata, whatever the dtypes, shapes, names and chunk size;
  the files of a save differ from save_file's only by the checksum in their metadata;
* the files a save replaces or removes are held open across the renames and closed in the background
  (``commits._hold_replaced``), so that the renames do not free their blocks: afterwards no descriptor stays open and
  the folder holds the new checkpoint's files only."""
import hashlib
import json
import multiprocessing
import os

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import archit.loading.commits as commits
from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification
from archit.loading.commits import DirectoryCommit
from archit.loading.files import SAFETENSORS_DTYPES, named_dtype, read_tensor_headers
from archit.loading.integrity import DIGEST_KEY
from archit.loading.writing import WRITTEN_DTYPES, SafetensorsLayout

from tests.helpers import perturb_, roberta_config

THOROUGH = os.environ.get("ARCHIT_THOROUGH") == "1"


def random_tensor(dtype: torch.dtype, shape: tuple, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(shape, generator=generator) * 50
    return (values > 0) if dtype == torch.bool else values.to(dtype)


def written_by_archit(tmp_path, tensors, metadata) -> bytes:
    layout = SafetensorsLayout.of(tensors, metadata)
    assert layout is not None
    with DirectoryCommit(tmp_path) as commit:
        commit.write_chunks("archit.safetensors", layout.chunks())
    return (tmp_path / "archit.safetensors").read_bytes()


def written_by_safetensors(tmp_path, tensors, metadata) -> bytes:
    save_file(tensors, str(tmp_path / "reference.safetensors"), metadata=metadata)
    return (tmp_path / "reference.safetensors").read_bytes()



def test_the_one_dtype_table_is_torchs_and_safetensors(tmp_path):
    """``files.SAFETENSORS_DTYPES`` (read by the header check, the header reader and the writer): each entry is the
    dtype safetensors means by that name, of the size torch gives its elements, and the table's order is the order in
    which safetensors stores dtypes (the last first)."""
    installed = getattr(safetensors.torch, "_TYPES", {})
    known = {}
    for name, (torch_name, size) in SAFETENSORS_DTYPES.items():
        dtype = named_dtype(torch_name)
        if dtype is None or installed.get(name) != dtype:
            continue  # This torch or safetensors lacks it.
        assert torch.empty(0, dtype=dtype).element_size() == size, name
        known[name] = dtype
    assert {"F32", "BF16", "F16", "I64", "BOOL"} <= set(known)
    tensors = {name: torch.zeros(2, dtype=dtype) for name, dtype in known.items()}
    save_file(tensors, str(tmp_path / "every.safetensors"))
    headers = read_tensor_headers([str(tmp_path / "every.safetensors")])
    assert {name: header.dtype for name, header in headers.items()} == \
        {name: SAFETENSORS_DTYPES[name][0] for name in known}
    header = json.loads((tmp_path / "every.safetensors").read_bytes()[8:8 + int.from_bytes(
        (tmp_path / "every.safetensors").read_bytes()[:8], "little")])
    stored_order = sorted(known, key=lambda name: header[name]["data_offsets"][0])
    assert stored_order == list(known)[::-1]
    assert list(WRITTEN_DTYPES.values()) == [name for name in known if name != "C64"]


names = st.text(max_size=6).filter(lambda name: name != "__metadata__")
shapes = st.lists(st.integers(0, 5), max_size=3).map(tuple)
tensor_specs = st.dictionaries(names, st.tuples(st.sampled_from(list(WRITTEN_DTYPES)), shapes), max_size=8)
metadata = st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=1)  # More: in hash order


@settings(max_examples=500 if THOROUGH else 60, deadline=None, derandomize=not THOROUGH, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # monkeypatch: set anew for each example
@given(specs=tensor_specs, metadata=metadata, chunk=st.sampled_from([1, 7, 64, 2**20]))
def test_same_bytes_as_save_file(specs, metadata, chunk, tmp_path_factory, monkeypatch):
    assume(specs or metadata is None)  # Then safetensors writes '{},"__metadata__":{...}}' (archit uses save_file).
    monkeypatch.setattr(commits, "WRITEBACK_CHUNK", chunk)  # Small chunks: many writes and early writebacks.
    tensors = {name: random_tensor(dtype, shape, seed) for seed, (name, (dtype, shape)) in enumerate(specs.items())}
    folder = tmp_path_factory.mktemp("writer")
    assert written_by_archit(folder, tensors, metadata) == written_by_safetensors(folder, tensors, metadata)


def test_every_dtype_and_edge_shape(tmp_path):
    """One file with every dtype archit writes itself, a bf16 scalar, empty tensors, and names sorting differently as
    bytes and as characters."""
    tensors = {f"layer.{i}.{str(dtype)[6:]}": random_tensor(dtype, (3, 4), i) for i, dtype in enumerate(WRITTEN_DTYPES)}
    tensors.update({"scalar": random_tensor(torch.bfloat16, (), 99), "empty": torch.zeros(0, 4),
                    "empty.bf16": torch.zeros(4, 0, dtype=torch.bfloat16), "é": torch.ones(2), "z": torch.ones(2),
                    "\u00ff\u0100": torch.ones(1, dtype=torch.int64)})
    assert written_by_archit(tmp_path, tensors, {"format": "pt"}) == \
        written_by_safetensors(tmp_path, tensors, {"format": "pt"})


def split_safetensors(data: bytes):
    """A safetensors file's header (parsed) and data bytes, read here independently of archit."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]), data[8 + length:]


@pytest.mark.parametrize("shard_size", ["5GB", "4KB"])
def test_saved_weight_files_are_save_files(shard_size, tmp_path):
    """The weight files of a save (of a model with float32 and bfloat16 tensors) are what save_file writes for the
    tensors they hold, but for the checksum in the metadata: the same tensor entries, the same data bytes."""
    torch.manual_seed(0)
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()),
                                                                     TokenClassificationHeadConfig(num_labels=3))
    state_dict = perturb_(model).state_dict()
    for key in list(state_dict)[::3]:
        state_dict[key] = state_dict[key].to(torch.bfloat16)
    model.save_pretrained(str(tmp_path / "saved"), max_shard_size=shard_size, state_dict=state_dict)
    files = sorted((tmp_path / "saved").glob("*.safetensors"))
    assert len(files) == 1 if shard_size == "5GB" else len(files) > 3, files
    for path in files:
        save_file(load_file(str(path)), str(tmp_path / "again.safetensors"), metadata={"format": "pt"})
        ours, our_data = split_safetensors(path.read_bytes())
        theirs, their_data = split_safetensors((tmp_path / "again.safetensors").read_bytes())
        assert ours.pop("__metadata__") == {"format": "pt", DIGEST_KEY: ours_digest(path)}
        assert theirs.pop("__metadata__") == {"format": "pt"}
        assert ours == theirs and our_data == their_data, path.name


def ours_digest(path) -> str:
    """The file's checksum, computed here as the README defines it: SHA-256 of the header without the checksum entry,
    as sorted compact JSON, then of the data."""
    header, data = split_safetensors(path.read_bytes())
    del header["__metadata__"][DIGEST_KEY]
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(canonical + b"".join(hashlib.sha256(data[i:i + 2**23]).digest() for i in range(0, len(data), 2**23))).hexdigest()


def test_unsupported_tensors_go_through_save_file():
    assert SafetensorsLayout.of({"a": torch.ones(2, dtype=torch.complex64)}, None) is None
    assert SafetensorsLayout.of({"a": torch.ones(2, 3).t()}, None) is None  # Not contiguous.
    assert SafetensorsLayout.of({"a": torch.ones(2, device="meta")}, None) is None
    assert SafetensorsLayout.of({}, {"format": "pt"}) is None


def test_several_metadata_entries_in_their_order(tmp_path):
    metadata = {"format": "pt", "b": "c", "a": "d"}
    header, _ = split_safetensors(written_by_archit(tmp_path, {"x": torch.arange(3.0)}, metadata))
    assert list(header["__metadata__"].items()) == list(metadata.items())
    assert torch.equal(load_file(str(tmp_path / "archit.safetensors"))["x"], torch.arange(3.0))


def open_deleted_files(folder) -> list:
    """This process's descriptors of files in ``folder`` that no longer have a name."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)) and target.endswith(" (deleted)"):
            found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="lists open descriptors through /proc")
@pytest.mark.parametrize("local", [True, False])
def test_replaced_files_released_after_save(local, tmp_path, monkeypatch):
    if not local:  # As on NFS: the renames and removals free the files themselves.
        monkeypatch.setattr(commits, "_local_file_system", lambda folder: False)
    torch.manual_seed(0)
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()),
                                                                     TokenClassificationHeadConfig(num_labels=3))
    folder = tmp_path / "saved"
    model.save_pretrained(str(folder), max_shard_size="4KB")
    before = {name: os.stat(folder / name).st_ino for name in os.listdir(folder)}
    assert len(before) > 4
    held = []
    monkeypatch.setattr(commits, "_release_later", held.extend)  # Keep them open, to see which were held.
    perturb_(model, seed=1).save_pretrained(str(folder), max_shard_size="5GB")  # Replaces config, removes the shards.
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
    held_inodes = {os.fstat(fd).st_ino for fd in held}
    assert held_inodes == (set(before.values()) if local else set())
    assert len(open_deleted_files(folder)) == len(held)
    monkeypatch.undo()
    commits._release_later(held)
    commits._release_later([os.open(folder / "config.json", os.O_RDONLY)])  # Queued last: released once it is.
    commits._releaser.submit(lambda: None).result()
    assert open_deleted_files(folder) == []


def save_twice_and_count_held(folder, result):
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()),
                                                                     TokenClassificationHeadConfig(num_labels=3))
    model.save_pretrained(str(folder))
    model.save_pretrained(str(folder))
    commits._releaser.submit(lambda: None).result(timeout=30)
    result.put(len(open_deleted_files(folder)))


@pytest.mark.skipif(not (hasattr(os, "fork") and os.path.isdir("/proc/self/fd")), reason="forks; reads /proc")
def test_forked_child_releases_replaced_files(tmp_path):
    """A child forked after a save (its release thread exists only in the parent) releases what its own saves held."""
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()),
                                                                     TokenClassificationHeadConfig(num_labels=3))
    model.save_pretrained(str(tmp_path / "parent"))
    model.save_pretrained(str(tmp_path / "parent"))  # The parent's release thread now exists.
    assert commits._releaser is not None
    context = multiprocessing.get_context("fork")
    result = context.Queue()
    child = context.Process(target=save_twice_and_count_held, args=(tmp_path / "child", result))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert result.get(timeout=5) == 0
