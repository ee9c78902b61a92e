"""The ``archit`` command, run as users run it (``python -m archit`` in a subprocess) and, where only the answer
matters, in-process (``archit.cli.main.main``).

``inspect`` is checked against the facts on every kind of checkpoint the loader reads: its kind, model type and files
against the folder, its parameter count and dtypes against the tensors read with safetensors/torch, and what it says
loading would do (load, initialise anew, leave unused, convert) against what ``from_pretrained(...,
output_loading_info=True)`` does. ``export`` is checked by loading its output in plain transformers."""
import contextlib
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

import archit.cli.inspection as inspection
from archit.cli.inspection import CheckpointDescription, WeightFile, inspect_checkpoint
from archit.cli.main import main
from archit.instantiation.basemodels import AutoBaseModel, BertBaseModel, RobertaBaseModel
from archit.instantiation.heads import (
    MaskedLMHeadConfig,
    SequenceClassificationHeadConfig,
    TokenClassificationHeadConfig,
)
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import (
    ForMaskedLM,
    ForSingleLabelSequenceClassification,
    ForSingleLabelTokenClassification,
)

from tests.helpers import (
    TRANSFORMERS_VERSION,
    assert_same_outputs,
    bert_config,
    build_transformers_model,
    load_archit,
    make_inputs,
    read_checkpoint_tensors,
    roberta_config,
    save_transformers_model,
)
from tests.test_load_archit import write_published_archit_checkpoint
from tests.test_load_base import write_prefixed_checkpoint

MIXTRAL = Path(__file__).resolve().parent / "data" / "converted" / "tf4.57" / "transformers" / "mixtral_base"
README = Path(__file__).resolve().parents[1] / "README.md"
JSON_KEYS = ["kind", "model_type", "architectures", "task", "head_config", "tied", "files", "parameters", "dtypes",
             "base_model_class", "would_load", "would_initialise", "unused", "converted"]


def run_archit(*args, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m archit ARGS``, as a user runs it (the environment carries HF_HUB_OFFLINE=1 from conftest)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "archit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def inspect_json(folder) -> dict:
    """``archit inspect FOLDER --json``, in this process: a subprocess costs seconds of importing torch and
    transformers, and the tests that run the command as users do (text output, errors, export) cover the entry point."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["inspect", str(folder), "--json"]) == 0
    return json.loads(out.getvalue())


def inspect_in_process(folder, capsys) -> dict:
    capsys.readouterr()
    assert main(["inspect", str(folder), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def roberta_token_classifier(bare_dir, num_labels: int = 3):
    return load_archit(ForSingleLabelTokenClassification, bare_dir, base_class=RobertaBaseModel,
                       head_config=TokenClassificationHeadConfig(num_labels=num_labels))


def logits_of(model):
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def assert_describes_the_files(description: dict, folder: Path) -> None:
    """Parameters and dtypes are those of the tensors themselves; the files are the folder's weight files."""
    tensors = read_checkpoint_tensors(folder)
    assert description["parameters"] == sum(t.numel() for t in tensors.values())
    dtypes = {}
    for tensor in tensors.values():
        name = str(tensor.dtype).replace("torch.", "")
        dtypes[name] = dtypes.get(name, 0) + tensor.numel()
    assert description["dtypes"] == dtypes
    files = description["files"]
    extension = ".safetensors" if files["format"] == "safetensors" else ".bin"
    on_disk = sorted(p.name for p in folder.iterdir() if p.name.endswith(extension))
    assert sorted(w["name"] for w in files["weights"]) == on_disk
    assert all(w["bytes"] == (folder / w["name"]).stat().st_size for w in files["weights"])
    assert files["sharded"] == (len(on_disk) > 1)
    assert set(JSON_KEYS) <= set(description)


def assert_plan_matches(description: dict, info: dict, model) -> None:
    """What inspect says loading would do is what loading did."""
    assert description["would_initialise"] == sorted(info["missing_keys"])
    assert description["unused"] == sorted(info["unexpected_keys"])
    assert description["converted"] == {k: list(v) for k, v in info["converted_keys"].items()}
    assert not set(description["would_load"]) & set(description["would_initialise"])
    parameters = {name for name, _ in model.named_parameters()}
    assert parameters <= set(description["would_load"]) | set(description["would_initialise"])


# ---------------------------------------------------------------------------------------------------------------------
# inspect, one kind of checkpoint at a time.

def test_inspect_bare_base_checkpoint(roberta_bare):
    description = inspect_json(roberta_bare)
    assert description["kind"] == "base"
    assert description["model_type"] == "roberta" and description["architectures"] == ["RobertaModel"]
    assert description["base_model_class"] == "RobertaBaseModel"
    assert description["task"] is None and description["head_config"] is None and description["key_prefix"] is None
    assert_describes_the_files(description, roberta_bare)
    model, info = RobertaBaseModel.from_pretrained(str(roberta_bare), output_loading_info=True)
    assert_plan_matches(description, info, model)
    assert description["unused"] == ["pooler.dense.bias", "pooler.dense.weight"]  # RobertaBaseModel has no pooler.


def test_inspect_prefixed_base_checkpoint(roberta_bare, tmp_path, capsys):
    write_prefixed_checkpoint(roberta_bare, "roberta", tmp_path)
    description = inspect_in_process(tmp_path, capsys)
    assert description["kind"] == "base" and description["key_prefix"] == "roberta."
    assert_describes_the_files(description, tmp_path)
    model, info = RobertaBaseModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert_plan_matches(description, info, model)
    assert description["unused"] == ["roberta.pooler.dense.bias", "roberta.pooler.dense.weight"]


def test_inspect_transformers_task_checkpoint(tmp_path):
    save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=5), tmp_path)
    description = inspect_json(tmp_path)
    assert description["kind"] == "transformers-task"
    assert description["architectures"] == ["RobertaForTokenClassification"]
    assert description["head"] == "token classification"
    assert description["head_config"] == {"num_labels": 5}
    assert description["planned"].startswith("ForSingleLabelTokenClassification.from_pretrained(")
    assert_describes_the_files(description, tmp_path)
    model, info = load_archit(ForSingleLabelTokenClassification, tmp_path, base_class=RobertaBaseModel,
                              output_loading_info=True)
    assert_plan_matches(description, info, model)
    assert "head.dense.weight" in description["would_load"]  # The head is imported, not new.


def test_inspect_transformers_task_without_an_archit_head(tmp_path, capsys):
    """A head no archit task reproduces (BERT's sequence classifier pools through the pooler): planned as a base model,
    the head's tensors unused, as BertBaseModel.from_pretrained leaves them."""
    save_transformers_model(transformers.BertForSequenceClassification, bert_config(num_labels=2), tmp_path)
    description = inspect_in_process(tmp_path, capsys)
    assert description["kind"] == "transformers-task" and description["head"] == "sequence classification"
    assert description["planned"] == "BertBaseModel.from_pretrained(CHECKPOINT)"
    model, info = BertBaseModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert_plan_matches(description, info, model)
    assert {"classifier.weight", "classifier.bias"} <= set(description["unused"])


@pytest.mark.parametrize("tie", [True, False])
def test_inspect_archit_checkpoint(roberta_bare, tmp_path, tie):
    model = load_archit(ForMaskedLM, roberta_bare, base_class=RobertaBaseModel,
                        head_config=MaskedLMHeadConfig(tie_weights=tie))
    model.save_pretrained(str(tmp_path))
    stored = json.loads((tmp_path / "config.json").read_text())
    description = inspect_json(tmp_path)
    assert description["kind"] == "archit"
    assert description["task"] == stored["task"] == "archit.instantiation.tasks:ForMaskedLM"
    assert description["head_config"] == stored["head_config"]
    assert description["tied"] is tie is stored["head_config"]["tie_weights"]
    assert_describes_the_files(description, tmp_path)
    reloaded, info = load_archit(ForMaskedLM, tmp_path, base_class=RobertaBaseModel, output_loading_info=True)
    assert reloaded.tiesWeights() is tie
    assert_plan_matches(description, info, reloaded)
    assert description["would_initialise"] == []


def test_inspect_published_archit_checkpoint(tmp_path):
    reference = build_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=4))
    write_published_archit_checkpoint(tmp_path, reference)
    description = inspect_json(tmp_path)
    assert description["kind"] == "archit-published"
    assert description["task"] is None and description["head_config"] == {"num_labels": 4}
    assert description["files"]["format"] == "bin"
    assert_describes_the_files(description, tmp_path)
    model, info = RobertaBaseModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert_plan_matches(description, info, model)
    assert description["unused"] == ["head.dense.bias", "head.dense.weight"]


def test_inspect_sharded_checkpoint(tmp_path, capsys):
    save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=3), tmp_path,
                            max_shard_size="20KB")
    description = inspect_in_process(tmp_path, capsys)
    assert description["files"]["sharded"] and description["files"]["index"] == "model.safetensors.index.json"
    assert len(description["files"]["weights"]) > 1
    assert_describes_the_files(description, tmp_path)
    model, info = load_archit(ForSingleLabelTokenClassification, tmp_path, base_class=RobertaBaseModel,
                              output_loading_info=True)
    assert_plan_matches(description, info, model)


def test_inspect_bin_checkpoint(tmp_path, capsys):
    save_transformers_model(transformers.RobertaModel, roberta_config(), tmp_path, safe_serialization=False)
    if not (tmp_path / "pytorch_model.bin").is_file():  # transformers 5 writes safetensors whatever it is asked.
        tensors = read_checkpoint_tensors(tmp_path)
        (tmp_path / "model.safetensors").unlink()
        torch.save(tensors, str(tmp_path / "pytorch_model.bin"))
    description = inspect_in_process(tmp_path, capsys)
    assert description["files"]["format"] == "bin"
    assert_describes_the_files(description, tmp_path)
    model, info = RobertaBaseModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert_plan_matches(description, info, model)


def test_inspect_converted_family():
    """The Mixtral base saved by transformers 4.57 stores its experts one by one: transformers 5 fuses them on load,
    and inspect names the fused tensors and their sources; 4.x converts nothing."""
    description = inspect_json(MIXTRAL)
    assert description["kind"] == "base" and description["base_model_class"] == "AutoBaseModel"
    assert_describes_the_files(description, MIXTRAL)
    model, info = AutoBaseModel.from_pretrained(str(MIXTRAL), output_loading_info=True)
    assert_plan_matches(description, info, model)
    converted = description["converted"]
    if TRANSFORMERS_VERSION.major >= 5:
        fused = [key for key in converted if key.startswith("_core.layers.0.") and "experts" in key]
        assert fused, converted
        assert sorted(source for key in fused for source in converted[key]) == sorted(
            f"layers.0.block_sparse_moe.experts.{e}.{w}.weight" for e in range(4) for w in ("w1", "w2", "w3"))
    else:
        assert converted == {}


def test_inspect_multihead_checkpoint(roberta_bare, tmp_path):
    model = ModelWithHeads.from_pretrained(str(roberta_bare), RobertaBaseModel, heads={
        "ner": (ForSingleLabelTokenClassification, TokenClassificationHeadConfig(num_labels=5)),
        "mlm": (ForMaskedLM, MaskedLMHeadConfig())})
    model.save_pretrained(str(tmp_path))
    stored = json.loads((tmp_path / "config.json").read_text())
    description = inspect_json(tmp_path)
    assert description["kind"] == "archit-multihead"
    assert {name: head["task"] for name, head in description["heads"].items()} == \
        {name: head["task"] for name, head in stored["heads"].items()}
    assert description["heads"]["ner"]["head_config"] == {"num_labels": 5}
    assert description["heads"]["mlm"]["tied"] is True and description["heads"]["ner"]["tied"] is False
    assert_describes_the_files(description, tmp_path)
    reloaded, info = ModelWithHeads.from_pretrained(str(tmp_path), RobertaBaseModel, output_loading_info=True)
    assert_plan_matches(description, info, reloaded)


def test_inspect_text_output(roberta_bare, tmp_path):
    """The default output: aligned lines naming the kind, the head and the plan's numbers."""
    roberta_token_classifier(roberta_bare).save_pretrained(str(tmp_path))
    done = run_archit("inspect", tmp_path)
    assert done.returncode == 0, done.stderr
    rows, columns = {}, set()
    for line in done.stdout.splitlines():
        label = next((label for label in TEXT_LABELS if line.startswith(label + " ")), None)
        if label is None:
            assert line.startswith(" "), line  # The note goes on in the value column.
            continue
        rows[label] = line[len(label):].lstrip()
        columns.add(len(line) - len(rows[label]))
    assert len(columns) == 1, done.stdout  # Values start in one column.
    assert rows["kind"].startswith("archit checkpoint") and rows["kind"].endswith("token classification")
    assert rows["task"] == "archit.instantiation.tasks:ForSingleLabelTokenClassification"
    assert rows["head config"] == '{"num_labels": 3}'
    assert rows["initialise"] == "none" and rows["unused"] == "none" and rows["converted"] == "none"
    assert rows["would load"] == f"{len(inspect_json(tmp_path)['would_load'])} tensors"
    assert rows["parameters"] == f"{sum(t.numel() for t in read_checkpoint_tensors(tmp_path).values()):,} (float32)"



def test_the_json_is_the_typed_description_with_the_readmes_keys(roberta_bare, tmp_path):
    """``--json`` prints ``CheckpointDescription.to_dict()``: its fields, in their order, and no other keys; they are
    the keys the README lists. In Python, the description's parts are typed too."""
    roberta_token_classifier(roberta_bare).save_pretrained(str(tmp_path))
    description = inspect_checkpoint(str(tmp_path))
    printed = inspect_json(tmp_path)
    assert printed == description.to_dict()
    assert list(printed) == [field.name for field in dataclasses.fields(CheckpointDescription)]
    readme = README.read_text()
    listed = readme[readme.index("`--json` prints one object with the keys"):readme.index("which inspect never imports")]
    assert set(re.findall(r"`(\w+)`", listed)) - {"auto_map"} == set(printed)
    assert description.files.weights == (WeightFile("model.safetensors", (tmp_path / "model.safetensors").stat().st_size),)
    assert description.would_load == tuple(printed["would_load"]) and description.plan_error is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        description.kind = "base"


TEXT_LABELS = ("checkpoint", "kind", "model", "task", "head config", "files", "parameters", "base class", "plan",
               "would load", "initialise", "unused", "converted")


# ---------------------------------------------------------------------------------------------------------------------
# Errors: one line on stderr, exit code 2, no traceback.

def _corrupt_safetensors(folder: Path, roberta_bare: Path) -> None:
    (folder / "config.json").write_text((roberta_bare / "config.json").read_text())
    (folder / "model.safetensors").write_bytes((roberta_bare / "model.safetensors").read_bytes()[:200])


def _corrupt_bin(folder: Path, roberta_bare: Path) -> None:
    (folder / "config.json").write_text((roberta_bare / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"not a torch file" * 10)


BAD_CHECKPOINTS = {
    "missing": (lambda folder, bare: None, lambda folder: folder / "nothing-here", "does not exist"),
    "file": (lambda folder, bare: (folder / "x.txt").write_text("x"), lambda folder: folder / "x.txt", "is a file"),
    "empty-folder": (lambda folder, bare: None, lambda folder: folder, "config.json"),
    "no-weights": (lambda folder, bare: (folder / "config.json").write_text((bare / "config.json").read_text()),
                   lambda folder: folder, "no weights"),
    "bad-json": (lambda folder, bare: (folder / "config.json").write_text("{not json"), lambda folder: folder,
                 "not valid JSON"),
    "corrupt-safetensors": (_corrupt_safetensors, lambda folder: folder, "model.safetensors"),
    "corrupt-bin": (_corrupt_bin, lambda folder: folder, "pytorch_model.bin"),
}


def assert_one_line_error(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("archit:")]
    assert len(errors) == 1, stderr
    assert errors[0].startswith("archit: error: ") and expected in errors[0], errors[0]
    assert stderr.rstrip().splitlines()[-1] == errors[0]


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_inspect_refuses_a_bad_checkpoint_in_one_line(case, tmp_path, roberta_bare, capsys):
    make, path, expected = BAD_CHECKPOINTS[case]
    make(tmp_path, roberta_bare)
    capsys.readouterr()
    assert main(["inspect", str(path(tmp_path)), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err, expected)


@pytest.mark.parametrize("case", ["corrupt-safetensors"])  # Every case runs in-process above.
def test_inspect_refuses_a_bad_checkpoint_in_one_line_as_a_command(case, tmp_path, roberta_bare):
    make, path, expected = BAD_CHECKPOINTS[case]
    make(tmp_path, roberta_bare)
    done = run_archit("inspect", path(tmp_path))
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line_error(done.stderr, expected)


# ---------------------------------------------------------------------------------------------------------------------
# export

def test_export_round_trip(roberta_bare, tmp_path):
    """An archit RoBERTa token classifier exported loads in plain transformers with the same logits."""
    model = roberta_token_classifier(roberta_bare, num_labels=4)
    model.save_pretrained(str(tmp_path / "archit"))
    done = run_archit("export", tmp_path / "archit", tmp_path / "hf")
    assert done.returncode == 0, done.stderr
    assert "RobertaForTokenClassification" in done.stdout
    exported = transformers.AutoModelForTokenClassification.from_pretrained(
        str(tmp_path / "hf"), attn_implementation="eager").eval()
    assert type(exported) is transformers.RobertaForTokenClassification
    assert exported.config.num_labels == 4
    assert_same_outputs(logits_of(exported), logits_of(model))


def test_export_with_named_classes(roberta_bare, tmp_path, capsys):
    """--base and --task take archit's names and package.module:Class; the published format names no task."""
    reference = build_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=4))
    (tmp_path / "published").mkdir()
    write_published_archit_checkpoint(tmp_path / "published", reference)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "published"), str(tmp_path / "out")]) == 2
    assert_one_line_error(capsys.readouterr().err, "--task")
    assert main(["export", str(tmp_path / "published"), str(tmp_path / "hf"), "--base", "RobertaBaseModel",
                 "--task", "archit.instantiation.tasks:ForSingleLabelTokenClassification"]) == 0
    assert capsys.readouterr().out.strip() == f"Saved RobertaForTokenClassification to {tmp_path / 'hf'}"
    exported = transformers.AutoModelForTokenClassification.from_pretrained(
        str(tmp_path / "hf"), attn_implementation="eager").eval()
    assert_same_outputs(logits_of(exported), logits_of(reference))
    assert main(["export", str(tmp_path / "published"), str(tmp_path / "x"),
                 "--task", "archit.instantiation.basemodels:RobertaBaseModel"]) == 2
    assert_one_line_error(capsys.readouterr().err, "not a ModelWithHead subclass")


def test_export_refuses_a_head_without_transformers_equivalent(roberta_bare, tmp_path, capsys):
    """The mean-pooling sequence classifier has no transformers class: exit 1, the reason in one line, nothing
    written."""
    model = load_archit(ForSingleLabelSequenceClassification, roberta_bare, base_class=RobertaBaseModel,
                        head_config=SequenceClassificationHeadConfig(num_labels=2))
    model.save_pretrained(str(tmp_path / "archit"))
    with pytest.raises(NotImplementedError) as raised:
        model.toHuggingFace()
    capsys.readouterr()
    assert main(["export", str(tmp_path / "archit"), str(tmp_path / "hf")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err, " ".join(str(raised.value).split()))
    assert not (tmp_path / "hf").exists()


def test_an_unforeseen_failure_is_one_line_unless_verbose(roberta_bare, monkeypatch, capsys):
    def fail(checkpoint):
        raise RuntimeError("something archit did not foresee")

    monkeypatch.setattr(inspection, "inspect_checkpoint", fail)
    capsys.readouterr()
    assert main(["inspect", str(roberta_bare)]) == 1
    assert_one_line_error(capsys.readouterr().err, "RuntimeError: something archit did not foresee (-v shows")
    assert main(["inspect", str(roberta_bare), "-v"]) == 1
    assert "Traceback" in capsys.readouterr().err
