"""Damaged checkpoints, generated with hypothesis: every damage is either harmless (the model loads, and each of its
tensors equals the damaged file's own, read with safetensors directly) or raises ``CheckpointError`` naming the damaged
file (and the key or field, where there is one), or the loader's refusal naming the tensors nothing takes. Never another
exception type, a crash, or a model with weights silently missing.

The default profile runs 260 examples over the three fuzz tests; ``ARCHIT_THOROUGH=1`` (``nox -t fuzz``) ten times as many."""
import builtins
import io
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
from safetensors.torch import load_file, save_file
from transformers import CONFIG_MAPPING

from archit import CheckpointError
from archit.instantiation.basemodels import AutoBaseModel, DebertaBaseModel, RobertaBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification
from archit.loading.configs import _check_field_types as check_field_types

from tests.helpers import (
    assert_same_last_hidden_state,
    load_archit,
    perturb_,
    roberta_config,
    save_transformers_model,
    transformers_reference,
)

THOROUGH = os.environ.get("ARCHIT_THOROUGH") == "1"
settings.register_profile("archit", deadline=None, derandomize=not THOROUGH, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile("archit")


def examples(default: int) -> settings:
    return settings(max_examples=default * 10 if THOROUGH else default)


@pytest.fixture(scope="module")
def intact(tmp_path_factory) -> Path:
    """A sharded archit checkpoint of a tiny RoBERTa with a token classification head."""
    torch.manual_seed(0)
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(
        RobertaBaseModel(roberta_config()), TokenClassificationHeadConfig(num_labels=3))
    perturb_(model)
    directory = tmp_path_factory.mktemp("intact")
    model.save_pretrained(str(directory), max_shard_size="20KB")
    assert len(list(directory.glob("model-*.safetensors"))) >= 4
    return directory


@pytest.fixture
def scratch(tmp_path_factory):
    """A fresh folder for each hypothesis example (function-scoped fixtures are shared by a test's examples)."""
    counter = iter(range(10**9))
    root = tmp_path_factory.mktemp("damaged")
    return lambda intact: Path(shutil.copytree(intact, root / str(next(counter))))


def load(directory: Path, base_class=RobertaBaseModel):
    return ForSingleLabelTokenClassification.from_pretrained(str(directory), base_class, attn_implementation="eager")


def check_outcome(directory: Path, *names: str, key: str = None) -> None:
    """Load the damaged folder: a clear error naming one of the damaged files ``names`` (and ``key``), or a model
    holding exactly the files' tensors."""
    try:
        model = load(directory)
    except CheckpointError as error:
        assert any(name in str(error) for name in names), (names, str(error))
        assert key is None or key in str(error), (key, str(error))
        return
    except ValueError as error:  # The loader's refusal of tensors nothing takes (a damaged tensor name).
        assert str(directory) in str(error) and "nothing in" in str(error), str(error)
        return
    files = {}
    for path in sorted(directory.glob("*.safetensors")):
        files.update(load_file(str(path)))
    state = model.state_dict()
    assert set(state) <= set(files), sorted(set(state) - set(files))
    for name, tensor in state.items():
        assert torch.equal(tensor, files[name]), name


def read_header(path: Path):
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def write_header(path: Path, header: dict, data: bytes) -> None:
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


def weight_files(directory: Path):
    return sorted(p.name for p in directory.glob("model-*.safetensors"))


# ---------------------------------------------------------------------------------------------------------------------
# Weight files.

DTYPES = ("F64", "F32", "F16", "BF16", "I64", "I32", "I8", "U8", "BOOL")


@examples(100)
@given(data=st.data())
def test_damaged_safetensors_file(data, intact, scratch):
    directory = scratch(intact)
    name = data.draw(st.sampled_from(weight_files(directory)), label="file")
    path = directory / name
    raw = path.read_bytes()
    header, payload = read_header(path)
    header_end = 8 + struct.unpack("<Q", raw[:8])[0]
    keys = sorted(k for k in header if k != "__metadata__")
    key = None
    kind = data.draw(st.sampled_from(["truncate", "flip header bit", "flip any bit", "header length",
                                      "offsets beyond file", "unknown dtype", "other dtype", "shape",
                                      "header not an object", "empty"]), label="kind")
    if kind == "truncate":
        path.write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
    elif kind in ("flip header bit", "flip any bit"):
        position = data.draw(st.integers(0, (header_end if kind == "flip header bit" else len(raw)) - 1))
        flipped = bytearray(raw)
        flipped[position] ^= 1 << data.draw(st.integers(0, 7))
        path.write_bytes(bytes(flipped))
    elif kind == "header length":
        length = data.draw(st.integers(0, 2**64 - 1).filter(lambda n: n != header_end - 8))
        path.write_bytes(struct.pack("<Q", length) + raw[8:])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "header not an object":
        value = data.draw(st.one_of(st.lists(st.integers()), st.text(), st.integers(), st.none()))
        encoded = json.dumps(value).encode()
        path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + payload)
    else:
        key = data.draw(st.sampled_from(keys), label="key")
        entry = header[key]
        if kind == "offsets beyond file":
            entry["data_offsets"][1] = len(payload) + data.draw(st.integers(1, 10**6))
        elif kind == "unknown dtype":
            entry["dtype"] = data.draw(st.text(min_size=1, max_size=8).filter(lambda d: d not in DTYPES))
        elif kind == "other dtype":
            entry["dtype"] = data.draw(st.sampled_from([d for d in DTYPES if d != entry["dtype"]]))
        else:
            entry["shape"] = data.draw(st.lists(st.integers(0, 200), max_size=3).filter(lambda s: s != entry["shape"]))
        write_header(path, header, payload)
    check_outcome(directory, name, key=key)


def test_tensor_in_two_shards(intact, tmp_path):
    directory = Path(shutil.copytree(intact, tmp_path / "ckpt"))
    first, second = weight_files(directory)[:2]
    tensors = load_file(str(directory / second))
    key = sorted(load_file(str(directory / first)))[0]
    tensors[key] = load_file(str(directory / first))[key] + 1
    save_file(tensors, str(directory / second), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=f"{first}.*{key}|{second}.*{key}"):
        load(directory)


# ---------------------------------------------------------------------------------------------------------------------
# The index.

INDEX = "model.safetensors.index.json"


@examples(60)
@given(data=st.data())
def test_damaged_index(data, intact, scratch):
    directory = scratch(intact)
    index_path = directory / INDEX
    index = json.loads(index_path.read_text())
    kind = data.draw(st.sampled_from(["missing shard", "not JSON", "weight_map type", "shard name", "duplicate key",
                                      "empty", "a directory", "shard a directory"]), label="kind")
    names = [INDEX]
    if kind == "missing shard":
        shard = data.draw(st.sampled_from(weight_files(directory)))
        (directory / shard).unlink()
        names.append(shard)
    elif kind == "not JSON":
        index_path.write_bytes(data.draw(st.binary(min_size=1, max_size=200)).replace(b"{", b"").replace(b"[", b"")
                               + b"}")
    elif kind == "weight_map type":
        index["weight_map"] = data.draw(st.one_of(st.lists(st.text()), st.text(), st.integers(), st.none()))
        index_path.write_text(json.dumps(index))
    elif kind == "shard name":
        key = data.draw(st.sampled_from(sorted(index["weight_map"])))
        index["weight_map"][key] = data.draw(st.one_of(st.sampled_from(["../model.safetensors", "/etc/passwd", "",
                                                                         ".", "sub/x.safetensors"]), st.integers()))
        index_path.write_text(json.dumps(index))
    elif kind == "duplicate key":
        text = index_path.read_text()
        key = data.draw(st.sampled_from(sorted(index["weight_map"])))
        line = f'"{key}": "{index["weight_map"][key]}"'
        index_path.write_text(text.replace(line, f"{line},\n    {line}", 1))
    elif kind == "empty":
        index_path.write_bytes(b"")
    elif kind == "a directory":
        index_path.unlink()
        index_path.mkdir()
    else:
        shard = data.draw(st.sampled_from(weight_files(directory)))
        (directory / shard).unlink()
        (directory / shard).mkdir()
        names.append(shard)
    check_outcome(directory, *names)


# ---------------------------------------------------------------------------------------------------------------------
# config.json.

def scalar_fields(config_dict: dict) -> list:
    """Base config fields whose default is a bool, int, float or str (those the type check judges)."""
    defaults = type(roberta_config())()
    return sorted(k for k in config_dict if isinstance(getattr(defaults, k, None), (bool, int, float, str))
                  and k != "model_type")


def wrong_value(default, key: str = ""):
    """Values of a type that cannot be the field ``key`` whose default is ``default`` (a float fits an int default of
    0, a rate for all we know, unless the field is a token id)."""
    anything = st.one_of(st.text(max_size=5), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    if isinstance(default, bool):
        return anything.filter(lambda v: not isinstance(v, bool))
    if isinstance(default, int):
        rate = default == 0 and not key.endswith("token_id")
        return anything.filter(lambda v: type(v) is not int and not isinstance(v, list)
                               and not (rate and type(v) is float))
    if isinstance(default, float):
        return anything.filter(lambda v: type(v) not in (int, float))
    return anything.filter(lambda v: not isinstance(v, str))


@examples(100)
@given(data=st.data())
def test_damaged_config(data, intact, scratch):
    directory = scratch(intact)
    path = directory / "config.json"
    config = json.loads(path.read_text())
    kind = data.draw(st.sampled_from(["not JSON", "empty", "top level", "base config type", "base field type",
                                      "head field type", "unknown model_type", "a directory", "duplicate key"]),
                     label="kind")
    key = None
    if kind == "not JSON":
        path.write_bytes(data.draw(st.binary(min_size=1, max_size=100)) + b"{")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "top level":
        path.write_text(json.dumps(data.draw(st.one_of(st.lists(st.integers()), st.text(), st.integers(), st.none()))))
    elif kind == "base config type":
        config["base_model_config"] = data.draw(st.one_of(st.lists(st.integers()), st.text(), st.integers()))
        path.write_text(json.dumps(config))
        key = "base_model_config"
    elif kind == "base field type":
        key = data.draw(st.sampled_from(scalar_fields(config["base_model_config"])), label="field")
        default = getattr(type(roberta_config())(), key)
        config["base_model_config"][key] = data.draw(wrong_value(default, key), label="value")
        path.write_text(json.dumps(config))
    elif kind == "head field type":
        key = data.draw(st.sampled_from(["num_labels"]), label="field")
        config["head_config"][key] = data.draw(wrong_value(3).filter(lambda v: v is not None), label="value")
        path.write_text(json.dumps(config))
    elif kind == "unknown model_type":
        config["base_model_config"]["model_type"] = data.draw(
            st.one_of(st.text(max_size=12).filter(lambda t: t not in CONFIG_MAPPING), st.integers()))
        path.write_text(json.dumps(config))
        key = "model_type"
    elif kind == "a directory":
        path.unlink()
        path.mkdir()
    else:
        path.write_text(path.read_text().replace('"model_type"', '"model_type": "roberta",\n    "model_type"', 1))
    with pytest.raises(CheckpointError) as caught:
        load(directory)
    assert "config.json" in str(caught.value)
    assert key is None or key in str(caught.value), str(caught.value)


def test_a_float_where_an_int_default_of_zero_stands_is_a_rate_not_damage(tmp_path):
    """DeBERTa's pooler_dropout defaults to ``0`` before transformers 5.23 and to ``0.0`` from then on, so a save of
    5.23 or later holds a float rate where older releases' default is an int: archit loads it on every release (as
    transformers' DebertaModel does; the era sessions run this on 4.x), with the same hidden states. A float token id
    or size is still refused, naming the field."""
    config = transformers.DebertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=64, max_position_embeddings=64, pad_token_id=0,
                                        pooler_dropout=0.1)
    save_transformers_model(transformers.DebertaModel, config, tmp_path / "deberta")
    model = load_archit(ForSingleLabelTokenClassification, tmp_path / "deberta", base_class=DebertaBaseModel,
                        head_config=TokenClassificationHeadConfig(num_labels=3))
    assert model.config.base_model_config.pooler_dropout == 0.1
    assert_same_last_hidden_state(model.base_model, transformers_reference(transformers.DebertaModel,
                                                                           tmp_path / "deberta"))

    class OldDebertaRates(transformers.PretrainedConfig):  # an int default of 0, as DebertaConfig's before 5.23
        model_type = "archit-test-old-rates"

        def __init__(self, pooler_dropout=0, hidden_size=32, pad_token_id=0, **kwargs):
            super().__init__(pad_token_id=pad_token_id, **kwargs)
            self.pooler_dropout, self.hidden_size = pooler_dropout, hidden_size

    check_field_types(OldDebertaRates, {"pooler_dropout": 0.1}, "config.json")
    for key, value in (("pad_token_id", 0.5), ("hidden_size", 32.5), ("pooler_dropout", "0.1")):
        with pytest.raises(CheckpointError, match=f"config.json, {key}: has"):
            check_field_types(OldDebertaRates, {key: value}, "config.json")


@pytest.mark.parametrize("model_type", ["robertx", 7])
def test_unknown_model_type_through_auto_base_model(intact, tmp_path, model_type):
    directory = Path(shutil.copytree(intact, tmp_path / "ckpt"))
    config = json.loads((directory / "config.json").read_text())
    config["base_model_config"]["model_type"] = model_type
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json, model_type"):
        load(directory, AutoBaseModel)


# ---------------------------------------------------------------------------------------------------------------------
# Unreadable files.

@pytest.mark.parametrize("name", ["config.json", INDEX, "model-00002-of-00005.safetensors"])
def test_unreadable_file(name, intact, tmp_path, monkeypatch):
    """chmod 000 where it denies reading; as root, where it does not, opening the file fails as it would."""
    directory = Path(shutil.copytree(intact, tmp_path / "ckpt"))
    if name.startswith("model-"):
        name = weight_files(directory)[1]
    path = directory / name
    path.chmod(0)
    if os.geteuid() == 0:
        def denying(opener):
            def open_(file, *args, **kwargs):
                if os.fspath(file) == str(path):
                    raise PermissionError(13, "Permission denied", str(path))
                return opener(file, *args, **kwargs)
            return open_
        monkeypatch.setattr(builtins, "open", denying(builtins.open))
        monkeypatch.setattr(io, "open", denying(io.open))
    try:
        with pytest.raises(CheckpointError, match=f"{name}.*(Permission denied|cannot be read)"):
            load(directory)
    finally:
        path.chmod(0o644)
