"""Checksums in weight files (``archit/loading/integrity.py``), and what checks them: ``archit verify``,
``from_pretrained(..., verify=True)``. Every save path writes them; each is recomputed here from the README's definition,
independently of archit; every bit flipped in a checksummed file is caught (hypothesis); files without checksums
(transformers', older archit's) verify their structure only and say so; the default load does not hash. And a tensor
whose dtype is of another kind than its parameter's (a flipped header dtype) is refused, naming file and tensor."""
import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import archit.loading.integrity as integrity
from archit import CheckpointError
from archit.cli.main import main
from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import ForSingleLabelTokenClassification
from archit.loading import plan_loading
from archit.loading.integrity import verify_checkpoint

from tests.helpers import assert_same_outputs, make_inputs, perturb_, roberta_config, save_transformers_model

THOROUGH = os.environ.get("ARCHIT_THOROUGH") == "1"
DATA = Path(__file__).parent / "data"
PIECE = 2**23


def split_safetensors(path: Path):
    """A safetensors file's header (parsed), header length and data bytes, read independently of archit."""
    raw = path.read_bytes()
    length = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + length]), length, raw[8 + length:]


def checksum(prefix: bytes, data: bytes) -> str:
    """The README's definition: SHA-256 of the prefix and the SHA-256 digests of the data's 8 MiB pieces."""
    digests = b"".join(hashlib.sha256(data[i:i + PIECE]).digest() for i in range(0, len(data), PIECE))
    return hashlib.sha256(prefix + digests).hexdigest()


def expected_safetensors_checksum(path: Path) -> str:
    header, _, data = split_safetensors(path)
    del header["__metadata__"]["archit_sha256"]
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return checksum(canonical, data)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    built = ForSingleLabelTokenClassification.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()),
                                                                     TokenClassificationHeadConfig(num_labels=3))
    return perturb_(built).eval()


@pytest.fixture(scope="module")
def saves(model, tmp_path_factory):
    """The same model saved by every save path."""
    root = tmp_path_factory.mktemp("saves")
    model.save_pretrained(str(root / "single"))
    model.save_pretrained(str(root / "sharded"), max_shard_size="20KB")
    model.save_pretrained(str(root / "bin-sharded"), max_shard_size="20KB", safe_serialization=False)
    model.save_pretrained(str(root / "bin-single"), safe_serialization=False)
    model.model.save_pretrained(str(root / "base"))
    model.model.save_pretrained(str(root / "base-sharded"), max_shard_size="20KB")
    ModelWithHeads.fromTaskModels({"tagger": model}).saveHead("tagger", str(root / "head"))
    assert main(["export", str(root / "single"), str(root / "export")]) == 0
    return root


@pytest.mark.parametrize("save", ["single", "sharded", "base", "base-sharded", "head", "export"])
def test_every_safetensors_file_carries_its_checksum(save, saves):
    files = sorted((saves / save).glob("*.safetensors"))
    assert files and (save not in ("sharded", "base-sharded") or len(files) > 2)
    for path in files:
        header, _, _ = split_safetensors(path)
        assert header["__metadata__"]["archit_sha256"] == expected_safetensors_checksum(path), path.name
        assert header["__metadata__"]["format"] == "pt"
    report = verify_checkpoint(saves / save)
    assert report.ok and not report.unverified, report.files
    assert {check.name for check in report.files if check.status == "verified"} == {path.name for path in files}


def test_bin_shards_carry_their_checksums_in_the_index(saves):
    index = json.loads((saves / "bin-sharded" / "pytorch_model.bin.index.json").read_text())
    digests = index["metadata"]["archit_sha256"]
    shards = sorted(path.name for path in (saves / "bin-sharded").glob("pytorch_model-*.bin"))
    assert sorted(digests) == shards and len(shards) > 2
    for name in shards:
        assert digests[name] == checksum(b"", (saves / "bin-sharded" / name).read_bytes())
    assert verify_checkpoint(saves / "bin-sharded").ok


def test_a_single_bin_file_has_no_place_for_one(saves, capsys):
    report = verify_checkpoint(saves / "bin-single")
    assert report.ok and [check.name for check in report.unverified] == ["pytorch_model.bin"]
    assert main(["verify", str(saves / "bin-single")]) == 0
    assert "no checksum" in capsys.readouterr().out


def test_checksummed_files_load_unchanged_elsewhere(model, saves):
    """The checksum is metadata: safetensors reads the tensors, and transformers the exported model, as ever."""
    tensors = load_file(str(saves / "single" / "model.safetensors"))
    assert all(torch.equal(tensors[key], value) for key, value in model.state_dict().items())
    exported = transformers.AutoModelForTokenClassification.from_pretrained(str(saves / "export"),
                                                                            attn_implementation="eager").eval()
    input_ids, attention_mask = make_inputs()
    model.eval()  # saveHead (asTask) put the shared modules in the multi-head model's training mode.
    with torch.no_grad():
        assert_same_outputs(exported(input_ids=input_ids, attention_mask=attention_mask).logits,
                            model(input_ids=input_ids, attention_mask=attention_mask).logits)


def flip(path: Path, offset: int, bit: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 1 << bit
    path.write_bytes(bytes(raw))


@pytest.fixture
def scratch(tmp_path_factory):
    counter = iter(range(10**9))
    root = tmp_path_factory.mktemp("flipped")
    return lambda source: Path(shutil.copytree(source, root / str(next(counter))))


def assert_caught(folder: Path, damaged: str, capsys) -> None:
    """verify_checkpoint, archit verify and from_pretrained(verify=True) all name the damaged file."""
    report = verify_checkpoint(folder)
    assert [check.name for check in report.damaged] == [damaged], report.files
    capsys.readouterr()
    assert main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert damaged in out and "damaged" in out
    if (folder / "config.json").exists():
        with pytest.raises(CheckpointError, match=damaged):
            ForSingleLabelTokenClassification.from_pretrained(str(folder), RobertaBaseModel, verify=True)


@settings(max_examples=1000 if THOROUGH else 100, deadline=None, derandomize=not THOROUGH, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_bit_flip_in_tensor_data_is_caught(data, saves, scratch, capsys):
    save = data.draw(st.sampled_from(["single", "sharded", "head"]))
    folder = scratch(saves / save)
    path = data.draw(st.sampled_from(sorted(folder.glob("*.safetensors"))))
    _, length, payload = split_safetensors(path)
    flip(path, 8 + length + data.draw(st.integers(0, len(payload) - 1)), data.draw(st.integers(0, 7)))
    assert_caught(folder, path.name, capsys)


@settings(max_examples=300 if THOROUGH else 30, deadline=None, derandomize=not THOROUGH, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_bit_flip_anywhere_in_a_checksummed_file_is_caught(data, saves, scratch, capsys):
    """Header included (its length, JSON, dtypes, shapes, offsets, the checksum itself), and .bin shards."""
    save = data.draw(st.sampled_from(["sharded", "bin-sharded"]))
    folder = scratch(saves / save)
    path = data.draw(st.sampled_from(sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))))
    flip(path, data.draw(st.integers(0, path.stat().st_size - 1)), data.draw(st.integers(0, 7)))
    report = verify_checkpoint(folder)
    assert path.name in {check.name for check in report.damaged} or any(
        path.name in check.message for check in report.damaged), report.files


def test_the_default_load_does_not_hash(saves, monkeypatch):
    def no_hashing(*args, **kwargs):
        raise AssertionError("hashed")
    monkeypatch.setattr(integrity, "_digest_rest", no_hashing)
    ForSingleLabelTokenClassification.from_pretrained(str(saves / "sharded"), RobertaBaseModel)
    with pytest.raises(AssertionError, match="hashed"):
        ForSingleLabelTokenClassification.from_pretrained(str(saves / "sharded"), RobertaBaseModel, verify=True)


def test_checkpoints_without_checksums_verify_their_structure_and_say_so(tmp_path, capsys, caplog):
    save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=3), tmp_path / "hf",
                            max_shard_size="20KB")
    for folder in (tmp_path / "hf", DATA / "crossera" / "tf4.57" / "token_classification"):
        report = verify_checkpoint(folder)
        assert report.ok and report.unverified and "no checksum" in report.summary()
        capsys.readouterr()
        assert main(["verify", str(folder)]) == 0
        assert "could not be checked" in capsys.readouterr().out
    ForSingleLabelTokenClassification.from_pretrained(str(tmp_path / "hf"), RobertaBaseModel, verify=True)
    assert "carry no checksum" in caplog.text
    shard = sorted((tmp_path / "hf").glob("model-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:100])  # Truncated: its structure gives it away.
    assert_caught(tmp_path / "hf", shard.name, capsys)


def test_an_index_that_does_not_match_its_shards(saves, tmp_path, capsys):
    folder = Path(shutil.copytree(saves / "sharded", tmp_path / "sharded"))
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    first, second = sorted(set(index["weight_map"].values()))[:2]
    key = next(k for k, shard in index["weight_map"].items() if shard == first)
    index["weight_map"][key] = second
    index_path.write_text(json.dumps(index))
    assert_caught(folder, index_path.name, capsys)


def test_no_checkpoint_is_exit_2(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["verify", str(tmp_path / "empty")]) == 2
    assert "empty" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# Dtypes of another kind.

def retype(path: Path, key: str, dtype: str) -> None:
    """Rewrite ``key``'s dtype in a safetensors header to one of the same width (the data stays as it is)."""
    header, length, data = split_safetensors(path)
    header[key]["dtype"] = dtype
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


@pytest.mark.parametrize("key, dtype", [("model._core.encoder.layer.0.attention.self.query.weight", "I32"),
                                        ("head.dense.bias", "U32")])
def test_a_tensor_of_another_dtype_kind_is_refused(key, dtype, saves, tmp_path):
    folder = Path(shutil.copytree(saves / "single", tmp_path / "retyped"))
    path = folder / "model.safetensors"
    retype(path, key, dtype)
    with pytest.raises(CheckpointError, match=key) as raised:
        ForSingleLabelTokenClassification.from_pretrained(str(folder), RobertaBaseModel)
    assert str(path) in str(raised.value) and "float32" in str(raised.value)
    plan = plan_loading(ForSingleLabelTokenClassification, str(folder), RobertaBaseModel)
    assert key in plan.error and str(path) in plan.error


def test_float_dtypes_cast_as_transformers_does(saves, tmp_path, model):
    """float32 bits reread as another float type of the same width is not caught by the kind (the checksum catches
    it); a float16 checkpoint loading into float32 is a cast, as in transformers."""
    folder = tmp_path / "half"
    model.save_pretrained(str(folder), state_dict={k: v.half() for k, v in model.state_dict().items()})
    loaded = ForSingleLabelTokenClassification.from_pretrained(str(folder), RobertaBaseModel)
    assert loaded.head.dense.weight.dtype == torch.float32
    assert torch.equal(loaded.head.dense.weight, model.head.dense.weight.half().float())


def test_a_saved_head_of_another_dtype_kind_is_refused(model, saves, tmp_path):
    folder = Path(shutil.copytree(saves / "head", tmp_path / "head"))
    retype(folder / "head.safetensors", "dense.weight", "I32")
    body = ModelWithHeads.fromModelAndHeadConfigs(model.model, {})
    with pytest.raises(CheckpointError, match="dense.weight"):
        body.loadHead(str(folder))
    assert "tagger" not in body.heads


def test_a_flip_in_the_name_of_the_checksum_is_damage_not_its_absence(saves, tmp_path, capsys):
    """Found by ``nox -t fuzz``: a flipped bit in ``archit_sha256`` (``\\x60rchit_sha256``) must not turn a checksummed
    file into one without a checksum, which verifies as 'unverified'."""
    folder = Path(shutil.copytree(saves / "single", tmp_path / "renamed"))
    path = folder / "model.safetensors"
    raw = path.read_bytes()
    flip(path, raw.index(b'"archit_sha256"') + 1, 0)
    assert b'"`rchit_sha256"' in path.read_bytes()
    assert_caught(folder, path.name, capsys)
