"""The ``archit`` command as a guide (issue 22): ``--help`` and ``--version`` without torch or transformers, a damaged
checkpoint refused before any environment is made, releases the index does not have refused with the nearest ones,
``--base``/``--task`` inferred as ``archit inspect`` plans, wrong names answered with the valid ones and a close match,
``inspect`` on a head saved by ``saveHead``, and the matrix report's title. Every message is checked with its exit code,
in-process (``archit.cli.main.main``); the import checks run in a fresh interpreter."""
import html
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from archit.cli import guidance, matrix, releases
from archit.cli.classes import named_class
from archit.cli.inspection import inspect_checkpoint
from archit.cli.main import main
from archit.instantiation import basemodels, tasks
from archit.instantiation.abstracts import BaseModel
from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import MaskedLMHeadConfig, TokenClassificationHeadConfig
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import ForMaskedLM, ForSingleLabelTokenClassification

from tests.helpers import (
    assert_same_outputs,
    bert_config,
    load_archit,
    make_inputs,
    read_checkpoint_tensors,
    save_transformers_model,
    transformers_reference,
)
from tests.test_cli import assert_one_line_error, roberta_token_classifier
from tests.test_matrix import row

REPO = Path(__file__).resolve().parent.parent

HEAVY = ("torch", "transformers", "safetensors", "numpy")

# ---------------------------------------------------------------------------------------------------------------------
# --help and --version: no torch, no transformers.

IMPORTS_AFTER = """
import sys
from archit.cli.main import main
try:
    main({argv!r})
except SystemExit as exit:
    code = exit.code
print(repr((code, sorted(name for name in {heavy!r} if name in sys.modules))))
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["inspect", "--help"], ["verify", "--help"],
                                  ["export", "--help"], ["matrix", "--help"]])
def test_help_and_version_import_neither_torch_nor_transformers(argv):
    """In a fresh interpreter: the answer, exit 0, and none of torch, transformers, safetensors, numpy imported."""
    done = subprocess.run([sys.executable, "-c", IMPORTS_AFTER.format(argv=argv, heavy=HEAVY)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    *printed, last = done.stdout.strip().splitlines()
    assert last == repr((0, []))
    assert ("usage: archit" in done.stdout) if argv[-1] == "--help" else (printed == [f"archit {_version()}"])


def test_python_m_archit_help_imports_neither_torch_nor_transformers():
    """``python -X importtime -m archit --help``: the import log names no module of torch or transformers."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "archit", "matrix", "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and "usage: archit matrix" in done.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "archit" in imported and not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_the_published_names_stay_importable_from_the_package():
    """``from archit import printDifference`` (the published contract), ``renderDifference``, ``CheckpointError`` and
    ``__all__``: the lazily imported names are the modules' own objects; an unknown name is still an AttributeError."""
    code = ("import sys, archit; assert 'torch' not in sys.modules; from archit import *; "
            "from archit.declaration.compiler import printDifference as p, renderDifference as r; "
            "from archit.loading.errors import CheckpointError as c; "
            "assert (printDifference, renderDifference, CheckpointError) == (p, r, c); "
            "assert set(archit.__all__) <= set(dir(archit)); "
            "import pytest; pytest.raises(AttributeError, getattr, archit, 'nothing'); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.stdout.strip() == "ok", done.stderr


def _version() -> str:
    import archit

    return archit.__version__


def test_help_in_process_exits_0(capsys):
    for argv in (["--help"], ["matrix", "--help"], ["--version"]):
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 0
    out = capsys.readouterr().out
    assert "usage: archit [-h] [--version] COMMAND" in out and "--name NAME" in out
    assert out.rstrip().endswith(f"archit {_version()}")




# ---------------------------------------------------------------------------------------------------------------------
# archit matrix: everything refused before any environment is made.

class Stop(Exception):
    """Raised where archit matrix would start making environments: the checks before it all passed."""


@pytest.fixture
def no_environments(monkeypatch):
    """archit matrix with every environment refused: ``made`` lists the releases it would have built, ``probes`` the
    probes ``run_matrix`` got (it stops there, exit 1: ``main``'s unforeseen failure)."""
    seen = {"made": [], "probes": None}

    def build(release, cache):
        seen["made"].append(release)
        raise Stop(release)

    def run(probes, labels, out, cache, atol, reference=None, progress=None, modes=None):
        seen["probes"] = [dict(probe) for probe in probes]
        raise Stop("run_matrix")

    monkeypatch.setattr(matrix, "build_environment", build)
    monkeypatch.setattr(matrix, "run_matrix", run)
    monkeypatch.setenv(releases.NO_INDEX_ENV, "1")  # No network: the built-in list of minors.
    return seen


def matrix_main(checkpoint, *args, tmp_path) -> int:
    return main(["matrix", str(checkpoint), *args, "--cache-dir", str(tmp_path / "cache"), "--out",
                 str(tmp_path / "out")])


def assert_refused(capsys, code, expected, tmp_path, seen):
    """Exit 2, one line naming what is wrong, and nothing made: no environment, an empty cache, no report."""
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert_one_line_error(captured.err, expected)
    assert seen["made"] == [] and seen["probes"] is None
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    assert not (tmp_path / "out").exists()


@pytest.fixture
def tagger(roberta_bare, tmp_path):
    """An archit RoBERTa token classifier (its config names ForSingleLabelTokenClassification)."""
    folder = tmp_path / "runs" / "my-tagger" / "model"
    roberta_token_classifier(roberta_bare, num_labels=3).save_pretrained(str(folder))
    return folder


def _truncate_data(folder: Path, _: Path) -> str:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])  # The header intact, the last tensor's bytes cut off.
    return str(weights)


def _config_not_json(folder: Path, _: Path) -> str:
    (folder / "config.json").write_text('{"model_type": "roberta",')
    return str(folder / "config.json")


def _header_cut(folder: Path, _: Path) -> str:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    return str(weights)


@pytest.mark.parametrize("damage", [_truncate_data, _config_not_json, _header_cut])
def test_a_damaged_checkpoint_is_refused_before_any_environment(damage, tagger, tmp_path, capsys, no_environments):
    """The checks archit inspect runs, once: exit 2 with the CheckpointError naming the file; no release blamed, no
    environment made, the cache left empty. archit inspect refuses it with the same line."""
    path = damage(tagger, tmp_path)
    code = matrix_main(tagger, "--transformers", "4.57", "5.0", tmp_path=tmp_path)
    assert_refused(capsys, code, path, tmp_path, no_environments)
    assert main(["inspect", str(tagger)]) == 2
    inspected = capsys.readouterr().err.strip()
    code = matrix_main(tagger, "--all", tmp_path=tmp_path)
    assert capsys.readouterr().err.strip() == inspected and code == 2


# Releases: a cut-down answer of PyPI's JSON API (the one tests/test_matrix.py reads).
PYPI_ANSWER = {"releases": {
    "4.35.2": [{"yanked": False}], "4.36.2": [{"yanked": False}], "4.57.5": [{"yanked": False}],
    "4.57.6": [{"yanked": True}], "5.0.0": [{"yanked": False}], "5.24.0": [{"yanked": False}],
    "5.26.0rc0": [{"yanked": False}]}}


@pytest.fixture
def index(monkeypatch, tmp_path):
    """The package index answering PYPI_ANSWER, read through releases.discover_versions itself (its cache in tmp)."""
    def fetch(url, accept, timeout):
        return json.dumps(PYPI_ANSWER), "application/json"

    monkeypatch.delenv(releases.NO_INDEX_ENV, raising=False)
    discover = releases.discover_versions
    monkeypatch.setattr(releases, "discover_versions",
                        lambda *_, **__: discover(cache=tmp_path / "releases.json", fetch=fetch, index=None))


@pytest.mark.parametrize("versions, expected", [
    (["4.99"], "transformers 4.99 is not on the package index; the nearest are 4.57, 5.0."),
    (["4.57.99"], "transformers 4.57.99 is not on the package index; the nearest are 4.57.5, 5.0.0."),
    (["4.57.6"], "transformers 4.57.6 is not on the package index; the nearest are 4.57.5, 5.0.0."),  # yanked
    (["9.1"], "transformers 9.1 is not on the package index; the nearest is 5.24."),
    (["5.26"], "transformers 5.26 has only pre-releases on the package index (5.26.0rc0): pass --pre"),
    (["3.0"], "transformers 3.0 is below archit's floor 4.36: archit runs on 4.36 and later"),
    (["5.0", "4.30"], "transformers 4.30 is below archit's floor 4.36"),
    (["4.35.2"], "transformers 4.35.2 is below archit's floor 4.36"),  # on the index, but below the floor
    (["banana"], "'banana' is not a transformers version: give a minor (4.57, its newest patch) or a full version"),
    (["4"], "'4' is not a transformers version"),
])
def test_releases_the_index_lacks_are_refused_with_the_nearest(versions, expected, tagger, tmp_path, capsys,
                                                               no_environments, index):
    code = matrix_main(tagger, "--transformers", *versions, tmp_path=tmp_path)
    assert_refused(capsys, code, expected, tmp_path, no_environments)


def test_releases_the_index_has_pass_and_the_reference_is_checked(tagger, tmp_path, capsys, no_environments, index):
    assert matrix_main(tagger, "--transformers", "4.57", "5.0.0", "5.26.0rc0", tmp_path=tmp_path) == 1
    assert no_environments["probes"] is not None  # Reached run_matrix.
    assert matrix_main(tagger, "--transformers", "5.26", "--pre", tmp_path=tmp_path) == 1
    no_environments["probes"] = None
    capsys.readouterr()
    code = matrix_main(tagger, "--transformers", "5.0", "--reference", "4.98", tmp_path=tmp_path)
    assert_refused(capsys, code, "transformers 4.98 is not on the package index", tmp_path, no_environments)


def test_offline_only_what_the_built_in_list_proves_absent_is_refused(tagger, tmp_path, capsys, no_environments):
    """Without the index: a minor inside the built-in list's span that it lacks is refused; a newer minor and a patch
    cannot be proven absent: a warning each, and the installer decides."""
    code = matrix_main(tagger, "--transformers", "4.99", tmp_path=tmp_path)
    assert_refused(capsys, code, "transformers 4.99 is not a transformers release (archit's built-in list: the "
                                 "package index cannot be reached); the nearest are 4.57, 5.0.", tmp_path,
                   no_environments)
    newest = releases.TRANSFORMERS_MINORS[-1]
    newer = "%d.%d" % (releases.minor_key(newest)[0], releases.minor_key(newest)[1] + 1)
    assert matrix_main(tagger, "--transformers", newer, "4.57.99", tmp_path=tmp_path) == 1
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("archit: warning:")]
    assert len(warnings) == 2 and newer in warnings[0] and "4.57.99" in warnings[1], warnings
    assert no_environments["probes"] is not None


# ---------------------------------------------------------------------------------------------------------------------
# --base and --task: what archit inspect plans with, unless given.

def test_an_archit_checkpoint_runs_as_its_own_task(tagger, tmp_path, capsys, no_environments):
    assert matrix_main(tagger, "--transformers", "5.0", tmp_path=tmp_path) == 1
    (probe,) = no_environments["probes"]
    stored = json.loads((tagger / "config.json").read_text())
    assert (probe["base"], probe["task"]) == (inspect_checkpoint(str(tagger)).base_model_class, stored["task"])
    assert (named_class(probe["base"], "base"), named_class(probe["task"], "task")) == (
        basemodels.RobertaBaseModel, tasks.ForSingleLabelTokenClassification)
    assert probe["head_config"] is None  # The checkpoint's own.


def test_a_transformers_task_model_runs_as_the_archit_task_computing_its_head(tmp_path, capsys, no_environments):
    """A BertForTokenClassification checkpoint: the task inferred is the archit one whose head computes the same, and
    that task loads it with transformers' logits."""
    folder = tmp_path / "bert-ner"
    save_transformers_model(transformers.BertForTokenClassification, bert_config(num_labels=5), folder)
    assert matrix_main(folder, "--transformers", "5.0", tmp_path=tmp_path) == 1
    (probe,) = no_environments["probes"]
    assert (probe["base"], probe["task"]) == ("BertBaseModel", "ForSingleLabelTokenClassification")
    task, base = named_class(probe["task"], "task"), named_class(probe["base"], "base")
    model = task.from_pretrained(str(folder), base, attn_implementation="eager").eval()
    reference = transformers_reference(transformers.BertForTokenClassification, folder)
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        assert_same_outputs(model(input_ids, attention_mask).logits, reference(input_ids, attention_mask).logits)


def test_a_base_model_needs_a_task_and_the_example_given_is_valid(roberta_bare, tmp_path, capsys, no_environments):
    code = matrix_main(roberta_bare, "--transformers", "5.0", tmp_path=tmp_path)
    captured = capsys.readouterr()
    example = f"--task {guidance.EXAMPLE_TASK} --head-config '{guidance.EXAMPLE_HEAD_CONFIG}'"
    assert code == 2
    assert_one_line_error(captured.err, f"'{roberta_bare}' is a base model (no head): archit matrix needs a task and a "
                                        f"head config for a new head, e.g. {example}. Tasks: ForSingleLabelToken")
    assert no_environments["probes"] is None
    # The example, as a shell would split it, passes every check.
    assert matrix_main(roberta_bare, "--transformers", "5.0", *shlex.split(example), tmp_path=tmp_path) == 1
    (probe,) = no_environments["probes"]
    assert probe["task"] == guidance.EXAMPLE_TASK and probe["base"] == "RobertaBaseModel"
    assert named_class(probe["task"], "task").headClass().configClass()(**probe["head_config"]).num_labels == 2


def test_given_classes_win_and_package_module_class_works(tagger, tmp_path, capsys, no_environments):
    assert matrix_main(tagger, "--transformers", "5.0", "--base", "AutoBaseModel", "--task",
                       "archit.instantiation.tasks:ForSingleLabelTokenClassification", tmp_path=tmp_path) == 1
    (probe,) = no_environments["probes"]
    assert (probe["base"], probe["task"]) == ("AutoBaseModel",
                                              "archit.instantiation.tasks:ForSingleLabelTokenClassification")


@pytest.mark.parametrize("option, wrong, expected", [
    ("--task", "ForTokenClassification", "'ForTokenClassification' is neither an archit task nor an importable "
                                         "'package.module:Class'; did you mean ForSingleLabelTokenClassification? "
                                         "Tasks: "),
    ("--base", "RobertaBase", "'RobertaBase' is neither an archit base model class nor an importable "
                              "'package.module:Class'; did you mean RobertaBaseModel? Base model classes: "),
    ("--task", "Zebra", "'Zebra' is neither an archit task nor an importable 'package.module:Class'; Tasks: "),
])
@pytest.mark.parametrize("command", ["matrix", "export"])
def test_a_wrong_name_lists_the_valid_ones_and_the_closest(command, option, wrong, expected, tagger, tmp_path, capsys,
                                                           no_environments):
    """Exit 2; the close match (difflib's) where there is one, and every valid name, as archit's modules list them."""
    if command == "matrix":
        code = matrix_main(tagger, "--transformers", "5.0", option, wrong, tmp_path=tmp_path)
    else:
        code = main(["export", str(tagger), str(tmp_path / "out"), option, wrong])
    captured = capsys.readouterr()
    assert code == 2
    assert_one_line_error(captured.err, expected)
    valid = list(tasks.TASKS) if option == "--task" else [
        name for name in basemodels.__all__ if issubclass(getattr(basemodels, name), BaseModel)]
    assert captured.err.strip().endswith(": " + ", ".join(valid) + ".")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Titles

@pytest.mark.parametrize("parts, expected", [
    (("my-tagger",), "my-tagger"),
    (("x", "my-tagger", "model"), "my-tagger/model"),
    (("runs", "ner", "checkpoint-500"), "ner/checkpoint-500"),
    (("ner", "checkpoint-500", "final"), "ner/checkpoint-500/final"),
    (("hub", "models--acme--tagger", "snapshots", "0123456789abcdef0123456789abcdef01234567"), "acme/tagger"),
])
def test_the_title_is_the_checkpoints_name(parts, expected, tmp_path):
    folder = tmp_path.joinpath(*parts)
    folder.mkdir(parents=True)
    assert guidance.checkpoint_title(str(folder)) == expected


def test_a_path_of_generic_names_takes_the_configs_hub_name(tmp_path):
    """Three generic names in a row: config.json's _name_or_path where it is a hub id (not a local path)."""
    folder = tmp_path / "output" / "checkpoint-5" / "model"
    folder.mkdir(parents=True)
    assert guidance.checkpoint_title(str(folder)) == "output/checkpoint-5/model"
    (folder / "config.json").write_text(json.dumps({"_name_or_path": "acme/tagger"}))
    assert guidance.checkpoint_title(str(folder)) == "acme/tagger"
    (folder / "config.json").write_text(json.dumps({"_name_or_path": str(tmp_path)}))
    assert guidance.checkpoint_title(str(folder)) == "output/checkpoint-5/model"


@pytest.mark.parametrize("name", [None, "NER tagger, release candidate"])
def test_the_report_is_titled_by_name_or_the_checkpoint(name, tagger, tmp_path, monkeypatch, capsys):
    """matrix.md, matrix.html and the probe column of matrix.json: --name, else "my-tagger/model" (not "model")."""
    monkeypatch.setenv(releases.NO_INDEX_ENV, "1")
    monkeypatch.setattr(matrix, "run_matrix", lambda probes, labels, *rest: [row("5.0", probe=probes[0]["name"])])
    code = matrix_main(tagger, "--transformers", "5.0", *(["--name", name] if name else []), tmp_path=tmp_path)
    assert code == 0, capsys.readouterr().err
    title = name or "my-tagger/model"
    markdown = (tmp_path / "out" / "matrix.md").read_text()
    assert f"archit matrix: {title}**" in markdown.splitlines()[0] and "archit matrix: model" not in markdown
    assert f"<title>archit matrix: {html.escape(title)}</title>" in (tmp_path / "out" / "matrix.html").read_text()
    assert [r["probe"] for r in json.loads((tmp_path / "out" / "matrix.json").read_text())] == [title]


# ---------------------------------------------------------------------------------------------------------------------
# archit export: the task inferred as inspect plans it, and --head-config.

def test_export_infers_a_transformers_task_models_task(tmp_path, capsys):
    """BertForTokenClassification (it used to get "pass --task (e.g. --task ForMaskedLM)"): exported as the archit
    token classifier computing its head, back to a BertForTokenClassification with the original's logits."""
    source = tmp_path / "bert-ner"
    save_transformers_model(transformers.BertForTokenClassification, bert_config(num_labels=5), source)
    assert main(["export", str(source), str(tmp_path / "out")]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == f"Saved BertForTokenClassification to {tmp_path / 'out'}"
    exported = transformers.AutoModelForTokenClassification.from_pretrained(str(tmp_path / "out"),
                                                                            attn_implementation="eager").eval()
    original = transformers_reference(transformers.BertForTokenClassification, source)
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        assert_same_outputs(exported(input_ids, attention_mask).logits, original(input_ids, attention_mask).logits)


def test_export_of_a_base_model_names_task_and_head_config(tmp_path, capsys):
    """A base model: exit 2 naming --task and --head-config (never the Python argument head_config=); with them, a new
    head on the checkpoint's body, exported with the body's weights as stored."""
    source = tmp_path / "bert-base"
    save_transformers_model(transformers.BertModel, bert_config(), source)
    out = str(tmp_path / "out")
    example = f"--task {guidance.EXAMPLE_TASK} --head-config '{guidance.EXAMPLE_HEAD_CONFIG}'"
    assert main(["export", str(source), out]) == 2
    assert_one_line_error(capsys.readouterr().err, f"'{source}' is a base model (no head): export needs a task and a "
                                                   f"head config for a new head, e.g. {example}. Tasks: ")
    assert main(["export", str(source), out, "--task", "ForSingleLabelTokenClassification"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, f"'{source}' is a base model (no head, so no head config): pass --head-config for the "
                               f"new ForSingleLabelTokenClassification head, a JSON object of "
                               f"TokenClassificationHeadConfig's fields (num_labels); e.g. --head-config "
                               f"'{guidance.EXAMPLE_HEAD_CONFIG}'.")
    assert "head_config=" not in err
    assert main(["export", str(source), out, "--head-config", "{nope"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--head-config is not JSON")
    assert main(["export", str(source), out, "--task", "ForSingleLabelTokenClassification", "--head-config",
                 '{"labels": 2}']) == 2
    assert_one_line_error(capsys.readouterr().err, "--head-config does not fit ForSingleLabelTokenClassification's "
                                                   "head config")
    assert not Path(out).exists()
    assert main(["export", str(source), out, *shlex.split(example)]) == 0, capsys.readouterr().err
    exported = transformers.AutoModelForTokenClassification.from_pretrained(out)
    assert type(exported) is transformers.BertForTokenClassification and exported.config.num_labels == 2
    body = read_checkpoint_tensors(source)
    exported_tensors = read_checkpoint_tensors(out)
    assert body and all(torch.equal(exported_tensors[f"bert.{key}"], tensor) for key, tensor in body.items()
                        if f"bert.{key}" in exported_tensors)
    assert {f"bert.{key}" for key in body} - set(exported_tensors) <= {"bert.pooler.dense.weight",
                                                                       "bert.pooler.dense.bias"}


# ---------------------------------------------------------------------------------------------------------------------
# archit inspect on a head saved by saveHead.

@pytest.fixture
def saved_heads(roberta_bare, tmp_path):
    """A token classifier's head and a tied masked-LM head on one RoBERTa body, each written by saveHead."""
    ner = load_archit(ForSingleLabelTokenClassification, roberta_bare, base_class=RobertaBaseModel,
                      head_config=TokenClassificationHeadConfig(num_labels=5))
    lm = load_archit(ForMaskedLM, roberta_bare, base_class=RobertaBaseModel, head_config=MaskedLMHeadConfig())
    model = ModelWithHeads.fromTaskModels({"ner": ner, "lm": lm})
    for name in ("ner", "lm"):
        model.saveHead(name, str(tmp_path / name))
    return model, tmp_path


@pytest.mark.parametrize("name", ["ner", "lm"])
def test_inspect_describes_a_head_saved_by_save_head(name, saved_heads, roberta_bare, capsys):
    """Kind, task, head config, tying and tensors as the model that saved it has them; the tensors are the ones
    loadHead loads (a tied output matrix is the body's, not stored)."""
    model, folder = saved_heads
    assert main(["inspect", str(folder / name), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    task, head_config = model.config.heads[name]
    body = {id(p) for p in model.model.parameters()}
    own = {key: tensor for key, tensor in model.heads[name].state_dict(keep_vars=True).items() if id(tensor) not in body}
    assert described["kind"] == "archit-head" and described["model_type"] == "roberta"
    assert named_class(described["task"], "task") is task
    assert described["head_config"] == json.loads(json.dumps(head_config.to_dict(), default=str))
    assert described["tied"] is model.asTask(name).tiesWeights() is (name == "lm")
    assert described["would_load"] == sorted(own)
    assert described["parameters"] == sum(tensor.numel() for tensor in own.values())
    assert described["files"]["weights"] == [{"name": "head.safetensors",
                                              "bytes": (folder / name / "head.safetensors").stat().st_size}]
    assert described["base_model_class"] == "RobertaBaseModel" and described["plan_error"] is None
    fresh = ModelWithHeads.fromTaskModels({"ner": load_archit(ForSingleLabelTokenClassification, roberta_bare,
                                                              base_class=RobertaBaseModel,
                                                              head_config=TokenClassificationHeadConfig(num_labels=2))})
    fresh.loadHead(str(folder / name), name="loaded")  # What inspect says is what loadHead takes.
    assert main(["inspect", str(folder / name)]) == 0
    text = capsys.readouterr().out
    assert "kind         head saved by saveHead (without its body)" in text and f"'{name}'" in text


@pytest.mark.parametrize("file, damage", [("head.safetensors", lambda path: path.write_bytes(path.read_bytes()[:-8])),
                                          ("head_config.json", lambda path: path.write_text("{not json"))])
def test_inspect_refuses_a_damaged_head_naming_the_file(file, damage, saved_heads, capsys):
    _, folder = saved_heads
    damage(folder / "ner" / file)
    assert main(["inspect", str(folder / "ner")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err, str(folder / "ner" / file))


def test_matrix_refuses_a_head_folder(saved_heads, tmp_path, capsys, no_environments):
    _, folder = saved_heads
    code = matrix_main(folder / "ner", "--transformers", "5.0", tmp_path=tmp_path)
    assert_refused(capsys, code, "is a head saved by saveHead, not a checkpoint", tmp_path, no_environments)


def test_every_probe_of_a_probes_file_is_validated(tagger, roberta_bare, tmp_path, capsys, no_environments):
    """--probes: each probe's checkpoint read once, as archit inspect reads it; the damaged one named, exit 2."""
    (tagger / "config.json").write_text("[1, 2]")
    probes = [{"name": "body", "checkpoint": str(roberta_bare), "base": "RobertaBaseModel", "task": "ForMaskedLM",
               "head_config": {}},
              {"name": "tagger", "checkpoint": str(tagger), "base": "RobertaBaseModel",
               "task": "ForSingleLabelTokenClassification"}]
    (tmp_path / "probes.json").write_text(json.dumps(probes))
    code = main(["matrix", "--probes", str(tmp_path / "probes.json"), "--transformers", "5.0", "--cache-dir",
                 str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    assert_refused(capsys, code, f"{tagger / 'config.json'}", tmp_path, no_environments)
