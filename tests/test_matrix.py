"""``archit matrix``'s parts that need no environment: release discovery (a fake index answer, the offline fallback,
the cache), the companion caps, the installer's error line, each row's status, and the Markdown, HTML and README
renderings (colours, numbers, the first failing release). The worker runs once for real, in this environment, on a
transformers checkpoint, and its logits are compared with transformers' own model's. The end-to-end run over real
releases is tests/test_matrix_slow.py."""
import ast
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
from pathlib import Path

import pytest
import torch
import transformers
from packaging.version import Version
from safetensors.torch import load_file

from archit.cli import matrix, releases
from archit.cli.main import main
from archit.cli.matrix_report import (
    COLOURS,
    DIFFERS,
    FAILS,
    SAME,
    classify,
    first_failing,
    render_html,
    render_markdown,
    render_readme_table,
    summary_line,
)
from archit.cli.matrix_worker import fixed_inputs, flat_logits, max_abs_diff
from archit.instantiation import tasks

from tests.helpers import (
    assert_same_outputs,
    build_transformers_model,
    expected_era,
    roberta_config,
    save_transformers_model,
    transformers_reference,
)

REPO = Path(__file__).resolve().parent.parent

# What PyPI's JSON API answers, cut down: finals, pre-releases, a dev release, a yanked patch, a minor below the floor,
# and a minor newer than the built-in list.
PYPI_ANSWER = {"releases": {
    "4.35.2": [{"yanked": False}], "4.36.0": [{"yanked": False}], "4.36.2": [{"yanked": False}],
    "4.57.5": [{"yanked": False}], "4.57.6": [{"yanked": True}, {"yanked": True}], "5.0.0rc1": [{"yanked": False}],
    "5.0.0": [{"yanked": False}], "5.24.0": [{"yanked": False}], "5.25.0": [{"yanked": False}],
    "5.26.0rc0": [{"yanked": False}], "5.26.0.dev0": [{"yanked": False}], "5.27.0": [],
}}


def fake_index(answer, seen=None):
    def fetch(url, accept, timeout):
        if seen is not None:
            seen.append((url, accept, timeout))
        return json.dumps(answer), "application/json"
    return fetch


def unreachable(url, accept, timeout):
    raise urllib.error.URLError("no network")


@pytest.fixture(autouse=True)
def _index_not_disabled(monkeypatch):
    monkeypatch.delenv(releases.NO_INDEX_ENV, raising=False)


# ---------------------------------------------------------------------------------------------------------------------
# Release discovery

def test_newest_patch_of_every_minor_from_the_floor_and_new_minors_enter():
    versions = releases.versions_from_pypi_json(PYPI_ANSWER)
    assert "4.57.6" not in versions and "5.27.0" not in versions  # all files yanked; no files
    assert releases.newest_per_minor(versions) == {"4.36": "4.36.2", "4.57": "4.57.5", "5.0": "5.0.0",
                                                   "5.24": "5.24.0", "5.25": "5.25.0"}
    with_pre = releases.newest_per_minor(versions, pre=True)
    assert with_pre["5.26"] == "5.26.0rc0" and with_pre["5.0"] == "5.0.0"


def test_discovery_asks_the_index_once_then_uses_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setattr(releases, "_configured_index_cheaply", lambda: False)
    seen = []
    found, source = releases.discover_releases(cache=tmp_path / "r.json", fetch=fake_index(PYPI_ANSWER, seen))
    assert source == releases.PYPI_JSON_URL and list(found)[-1] == "5.25"
    assert seen == [(releases.PYPI_JSON_URL, "application/json", releases.INDEX_TIMEOUT_S)]
    again, source = releases.discover_releases(cache=tmp_path / "r.json", fetch=unreachable)
    assert (again, source) == (found, "cache")


def test_discovery_falls_back_to_the_built_in_list_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(releases, "_configured_index_cheaply", lambda: False)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    found, source = releases.discover_releases(cache=tmp_path / "r.json", fetch=unreachable)
    assert source == "built-in list" and list(found) == list(releases.TRANSFORMERS_MINORS)
    assert not (tmp_path / "r.json").exists()
    monkeypatch.setenv(releases.NO_INDEX_ENV, "1")
    assert releases.discover_releases(cache=tmp_path / "r.json", fetch=fake_index(PYPI_ANSWER))[1] == "built-in list"


def test_discovery_reads_the_configured_simple_index(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    page = ('<a href="x/transformers-4.36.2-py3-none-any.whl">transformers-4.36.2-py3-none-any.whl</a>'
            '<a href="x/transformers-4.37.0.tar.gz">transformers-4.37.0.tar.gz</a>'
            '<a href="x" data-yanked="">transformers-4.37.1.tar.gz</a>')
    seen = []

    def fetch(url, accept, timeout):
        seen.append(url)
        return page, "text/html"
    found, source = releases.discover_releases(cache=tmp_path / "r.json", fetch=fetch)
    assert seen == ["https://mirror.example/simple/transformers/"] and source == "https://mirror.example/simple"
    assert found == {"4.36": "4.36.2", "4.37": "4.37.0"}
    pep691 = json.dumps({"files": [{"filename": "transformers-5.1.0-py3-none-any.whl"},
                                   {"filename": "transformers-5.1.1.tar.gz", "yanked": "broken"}]})
    assert releases.versions_from_simple(pep691, "application/vnd.pypi.simple.v1+json") == ["5.1.0"]


def test_one_order_of_versions_and_release_labels():
    """packaging's, for versions; a label that is no version (a release given on the command line) first."""
    versions = ["4.36.0.dev0", "4.36.0rc1", "4.36.0", "4.36.1", "4.36.10", "4.37.0a1", "4.37.0b2", "4.37.0",
                "4.37.0.post1", "5.0.0rc0", "5.0.0", "5.10.0"]
    shuffled = versions[::-1]
    assert sorted(shuffled, key=releases.version_key) == sorted(shuffled, key=Version) == versions
    labels = ["5.0", "4.9", "nightly", "4.36", "5.0.0rc1", "main", "4.36.2"]
    assert sorted(labels, key=releases.version_key) == ["main", "nightly", "4.9", "4.36", "4.36.2", "5.0.0rc1", "5.0"]
    assert releases.parsed_version("1.0+local") == Version("1.0+local") and releases.parsed_version("main") is None


def test_companions_cap_the_old_minors_only():
    assert releases.companions("4.36") == releases.companions("4.39.3") == ["accelerate<1.0", "numpy<2"]
    assert releases.companions("4.42") == ["numpy<2"]
    assert releases.companions("4.43") == releases.companions("5.24.0") == []
    assert releases.transformers_requirement("4.57") == "transformers~=4.57.0"
    assert releases.transformers_requirement("4.57.6") == "transformers==4.57.6"


def test_peft_line_per_minor():
    """peft 0.14+ imports transformers' EncoderDecoderCache (4.43+): older minors get 0.13.2, the rest the newest."""
    assert releases.peft_requirement("4.36") == releases.peft_requirement("4.42.4") == "peft>=0.13.2,<0.14"
    assert releases.peft_requirement("4.43") == releases.peft_requirement("5.24.0") == "peft>=0.14"
    with pytest.raises(ValueError, match="4.36"):
        releases.peft_requirement("4.30")


def test_one_table_shared_with_the_noxfile_and_only_the_standard_library():
    """The noxfile defines neither the minors nor the caps nor find-links itself; releases.py imports only stdlib (and
    packaging, which nox depends on), because nox's Python loads it by path."""
    nox_tree = ast.parse((REPO / "noxfile.py").read_text())
    assigned = {target.id for node in ast.walk(nox_tree) if isinstance(node, ast.Assign) for target in node.targets
                if isinstance(target, ast.Name)}
    defined = {node.name for node in ast.walk(nox_tree) if isinstance(node, ast.FunctionDef)}
    assert not {"COMPANION_CAPS", "PEFT_LINES"} & assigned
    assert not {"_pip_find_links", "_companions"} & defined
    for module in ("releases.py", "matrix_report.py"):
        tree = ast.parse((REPO / "archit" / "cli" / module).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        assert imported - {"__future__"} <= set(sys.stdlib_module_names) | {"packaging"}, module
        assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree)), module


def test_pip_find_links_from_the_environment(monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels /elsewhere")
    assert releases.find_links_args() == ["--find-links", "/opt/wheels", "--find-links", "/elsewhere"]


def test_environment_key_follows_what_is_installed(monkeypatch):
    monkeypatch.setenv(releases.TORCH_ENV, "torch==2.13.0")
    key = matrix.environment_key("4.38.2")
    assert key.startswith("tf4.38.2-") and key == matrix.environment_key("4.38.2")
    assert "accelerate<1.0" in matrix.environment_requirements("4.38.2")
    monkeypatch.setenv(releases.TORCH_ENV, "torch==2.5.1")
    assert matrix.environment_key("4.38.2") != key


def test_the_installer_error_line():
    stderr = ("Using CPython 3.11.7\n  × No solution found when resolving dependencies:\n  ╰─▶ Because there is no "
              "version of transformers==4.99.0 and you require transformers==4.99.0, we can conclude that your "
              "requirements are unsatisfiable.\n")
    assert matrix.tool_error(stderr).startswith("Because there is no version of transformers==4.99.0")
    plain = ("Using Python 3.11.7 environment at: e\nerror: No solution found when resolving dependencies\n  cause: "
             "Because there is no version of transformers==4.99.0 and you require transformers==4.99.0, ...\n")
    assert matrix.tool_error(plain).startswith("Because there is no version of transformers==4.99.0")


# ---------------------------------------------------------------------------------------------------------------------
# Rows and their renderings

def row(release, probe="tagger", ok=True, diff=0.0, error=None, era="5.0", load=0.25, reference="5.23.0"):
    result = {"release": release, "transformers": release, "probe": probe, "ok": ok, "error": error, "era": era,
              "max_abs_diff": diff if ok else None, "load_seconds": load if ok else None, "reference": reference,
              "initialised": ["head.x"] if ok else [], "unused": [], "converted": ["a", "b"] if ok else []}
    result["status"] = classify(result, 1e-5)
    return result


def test_classify():
    assert classify({"ok": True, "max_abs_diff": 1e-5}, 1e-5) == SAME
    assert classify({"ok": True, "max_abs_diff": 2e-5}, 1e-5) == DIFFERS
    assert classify({"ok": True, "max_abs_diff": float("inf")}, 1e-5) == DIFFERS
    assert classify({"ok": False, "max_abs_diff": None, "error": "x"}, 1e-5) == FAILS
    assert classify({"ok": True, "max_abs_diff": None}, 1e-5) == "unchecked"


def test_markdown_of_one_checkpoint():
    rows = [row("4.36.2", ok=False, error="ImportError: no | such", era="4.36"),
            row("4.49.0", ok=False, error="KeyError: 'x'", era="4.36"), row("4.57.6", diff=3e-4, era="4.50"),
            row("5.23.0")]  # Oldest first, as archit matrix sorts them.
    text = render_markdown(rows, 1e-5, "archit matrix: tagger")
    lines = text.splitlines()
    body = [line for line in lines if line.startswith("| 4.") or line.startswith("| 5.")]
    assert [line.split(" | ")[0] for line in body] == ["| 4.36.2", "| 4.49.0", "| 4.57.6", "| 5.23.0 (reference)"]
    assert "| 4.57.6 | 4.50 | differs | 0.0003 | 0.25 | 1 | 0 | 2 |" in text
    assert "ImportError: no \\| such" in text  # a | in an error does not break the table
    assert "First failing release: 4.36.2." in text
    assert summary_line(rows, 1e-5) == ("NOT THE SAME: fails on 4.36.2, 4.49.0; loads, outputs differ beyond "
                                        "atol on 4.57.6.")
    many = [row(f"4.{minor}.0", ok=False, error="E") for minor in range(40, 45)]
    assert summary_line(many, 1e-5) == "NOT THE SAME: fails on 4.40.0 … 4.44.0 (5 releases)."
    assert summary_line([row("4.57.6", diff=2e-7), row("5.23.0")], 1e-5).startswith("same outputs on all 2 releases "
                                                                                     "(max |diff| 2e-07")


def test_html_is_one_coloured_self_contained_page():
    rows = [row("4.36.2", probe="a", ok=False, error="ImportError: <needs 4.48>", era="4.36"),
            row("4.36.2", probe="b", diff=2e-3, era="4.36"), row("4.57.6", probe="a", ok=False, error="E: later"),
            row("4.57.6", probe="b"), row("5.23.0", probe="a"), row("5.23.0", probe="b")]
    page = render_html(rows, 1e-5, "two probes")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "http" not in page and "<link" not in page and "<script" not in page and "src=" not in page
    for status in (SAME, DIFFERS, FAILS):
        assert f"td.{status} {{ background: {COLOURS[status]}; }}" in page
    assert page.count('<td class="fails"') == 2 and page.count('<td class="differs"') == 1
    assert page.count('<td class="same"') == 3
    assert "ImportError: &lt;needs 4.48&gt;" in page  # escaped
    assert "differs (0.002)" in page
    assert '<tr class="first-failing"><td>first failing</td><td></td><td>4.36.2</td><td>none</td></tr>' in page
    assert first_failing(rows) == {"a": "4.36.2", "b": None}
    assert page.index("NOT THE SAME: fails on 4.36.2, 4.57.6 (a); loads, outputs differ beyond atol on 4.36.2 (b).") \
        < page.index("<table")  # the verdict on top
    many = rows + [row(release, probe=probe) for release in ("4.36.2", "4.57.6", "5.23.0") for probe in ("c", "d")]
    compact = render_html(many, 1e-5, "four probes")  # upright headers, errors as numbered notes
    assert '<table class="compact">' in compact and "fails <sup>1</sup>" in compact and "fails <sup>2</sup>" in compact
    assert '<ol class="notes">\n<li>4.36.2, a: <code>ImportError: &lt;needs 4.48&gt;</code></li>' in compact
    grid = render_markdown(rows, 1e-5, "two probes")
    assert "| 4.36.2 | 4.36 | fails | differs (0.002) |" in grid and "| first failing | | 4.36.2 | none |" in grid


def test_readme_table_folds_releases_with_the_same_outcome():
    rows = []
    for release, era in (("4.36.2", "4.36"), ("4.37.2", "4.36"), ("4.50.3", "4.50"), ("5.0.0", "5.0"),
                         ("5.1.0", "5.0")):
        rows += [row(release, probe="mlm", era=era),
                 row(release, probe="modernbert", era=era, ok=release.startswith("5"), error=f"ImportError: {release}")]
    table = render_readme_table(rows, "2026-11-30")
    assert "on 2026-11-30: 2 probe checkpoints" in table and "5 transformers releases" in table
    assert "| 4.36.2 – 4.37.2 | 4.36 | 1/2 same outputs; fails: modernbert |" in table
    assert "| 4.50.3 | 4.50 | 1/2 same outputs; fails: modernbert |" in table
    assert "| 5.0.0 – 5.1.0 | 5.0 | 2/2 same outputs |" in table


# ---------------------------------------------------------------------------------------------------------------------
# The worker, for real in this environment, and bad arguments

def test_fixed_inputs_are_seeded_and_within_the_vocabulary():
    first, again = fixed_inputs(tasks.ForMaskedLM, 50), fixed_inputs(tasks.ForMaskedLM, 50)
    assert torch.equal(first["input_ids"], again["input_ids"]) and int(first["input_ids"].max()) < 50
    assert fixed_inputs(tasks.ForSingleAnswerMultipleChoice, 50)["input_ids"].dim() == 3
    assert fixed_inputs(tasks.ForDependencyParsing, 50)["attention_mask"].dim() == 2
    logits = flat_logits((torch.zeros(2), {"x": torch.ones(3)}))
    assert list(logits) == ["logits.0", "logits.1.x"]
    assert max_abs_diff(logits, {**logits, "logits.0": torch.full((2,), -0.5)}) == 0.5
    assert max_abs_diff(logits, {"logits.0": torch.zeros(2)}) == float("inf")


def test_the_worker_in_this_environment_gives_transformers_logits(tmp_path, monkeypatch):
    """run_matrix with this environment standing for release 2.0 and release 1.0 not installable: the worker loads a
    transformers token classifier with archit and saves transformers' own logits on the fixed input; 1.0 fails with
    the installer's line. (Two real releases: tests/test_matrix_slow.py.)"""
    save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=5), tmp_path / "ckpt")
    environments = {"2.0": matrix.Environment(python=sys.executable, seconds=0.0, created=False),
                    "1.0": matrix.FailedEnvironment(error="no 1.0", seconds=0.1)}
    monkeypatch.setattr(matrix, "build_environment", lambda label, cache: environments[label])
    probes = [{"name": "tagger", "checkpoint": str(tmp_path / "ckpt"), "base": "RobertaBaseModel",
               "task": "ForSingleLabelTokenClassification", "head_config": None}]
    lines = []
    old, new = matrix.run_matrix(probes, ["1.0", "2.0"], tmp_path / "out", tmp_path / "cache", 1e-5, None,
                                 lines.append)
    assert (old["status"], old["error"], old["max_abs_diff"]) == (FAILS, "environment: no 1.0", None)
    assert old["transformers"] == "1.0"  # the release asked for, when its environment failed
    assert (new["status"], new["max_abs_diff"], new["reference"]) == (SAME, 0.0, new["transformers"])
    assert new["transformers"] == transformers.__version__ and new["era"] == expected_era()
    assert new["initialised"] == new["unused"] == new["converted"] == [] and new["reload_max_abs_diff"] == 0.0
    assert len(lines) == 2 and any("same, max |diff| 0" in line for line in lines)  # in the order the releases end
    assert any("fails: environment: no 1.0" in line for line in lines)
    reference = transformers_reference(transformers.RobertaForTokenClassification, tmp_path / "ckpt")
    with torch.no_grad():
        expected = reference(**fixed_inputs(tasks.ForSingleLabelTokenClassification, 99)).logits
    assert_same_outputs(load_file(str(tmp_path / "out" / new["logits_file"]))["logits"], expected)



def test_a_worker_answering_for_other_probes_fails_every_probe_saying_so(tmp_path, monkeypatch):
    """Results are matched to probes by position: a worker that answers fewer rows, or rows for other probes, makes a
    failed row for every probe of that release, saying so, instead of rows dropped or credited to the wrong probe."""
    monkeypatch.setattr(matrix, "build_environment",
                        lambda label, cache: matrix.Environment(python=sys.executable, seconds=0.0, created=False))
    probes = [{"name": name, "checkpoint": str(tmp_path / name), "base": "RobertaBaseModel", "task": "ForMaskedLM",
               "head_config": None} for name in ("first", "second")]
    answers = {"4.57": [{"probe": "first", "ok": False, "error": "E"}],
               "5.24": [{"probe": "second", "ok": False, "error": "E"}, {"probe": "first", "ok": False, "error": "E"}]}
    monkeypatch.setattr(matrix, "run_worker", lambda python, probes, out, atol, *more: answers[out.name])
    rows = matrix.run_matrix(probes, ["4.57", "5.24"], tmp_path / "out", tmp_path / "cache", 1e-5)
    assert [(row["release"], row["probe"], row["status"]) for row in rows] == [
        ("4.57", "first", FAILS), ("4.57", "second", FAILS), ("5.24", "first", FAILS), ("5.24", "second", FAILS)]
    assert rows[0]["error"] == "the worker answered for the probes ['first'], not for ['first', 'second']"
    assert rows[2]["error"] == "the worker answered for the probes ['second', 'first'], not for ['first', 'second']"


@pytest.mark.parametrize("args, message", [
    (["missing-folder", "--base", "RobertaBaseModel", "--task", "ForMaskedLM", "--transformers", "5.23"],
     "'missing-folder' does not exist."),
    (["{ckpt}", "--base", "NoSuchModel", "--task", "ForMaskedLM", "--transformers", "5.23"], "'NoSuchModel' is neither"),
    (["{ckpt}", "--base", "RobertaBaseModel", "--task", "ForMaskedLM"], "give the releases to run"),
    (["{ckpt}", "--base", "RobertaBaseModel", "--task", "ForMaskedLM", "--head-config", "{{x", "--all"],
     "--head-config is not JSON"),
    (["{ckpt}", "--base", "RobertaBaseModel", "--task", "ForMaskedLM", "--head-config", '{{"num_labels": 3}}', "--all"],
     "--head-config does not fit ForMaskedLM's head config"),
    (["--task", "ForMaskedLM", "--all"], "needs CHECKPOINT"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "ckpt").mkdir()
    code = main(["matrix", *(arg.format(ckpt=tmp_path / "ckpt") for arg in args), "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_releases_to_run(monkeypatch):
    """--all: the newest patch of every discovered minor; a minor stands for its newest patch where the index knows it;
    a full version stays as given."""
    monkeypatch.setattr(releases, "discover_releases", lambda pre=False: (
        releases.newest_per_minor(releases.versions_from_pypi_json(PYPI_ANSWER), pre=pre), "index"))
    assert matrix.resolve_releases(None, True, False) == ["4.36.2", "4.57.5", "5.0.0", "5.24.0", "5.25.0"]
    assert matrix.resolve_releases(None, True, True)[-1] == "5.26.0rc0"
    assert matrix.resolve_releases(["4.57", "4.99", "4.36.0"], False, False) == ["4.57.5", "4.99", "4.36.0"]


FAKE_UV = '''#!{python}
"""uv for test_two_runs_make_one_environment: 'venv' logs its start, then waits until the other run either waits for
the environment's lock or is making the environment too (pause points, no timing), then makes a bin/python."""
import os, pathlib, sys, time
args = sys.argv[1:]
log = pathlib.Path(os.environ["FAKE_UV_LOG"])
if args[0] == "venv":
    folder = pathlib.Path(args[-1])
    with open(log, "a") as handle:
        handle.write(f"start {{os.getpid()}}\\n")
    lock = pathlib.Path(str(folder) + ".lock")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.read_text().count("start") > 1:
            break
        if lock.exists() and any("->" in line and f":{{lock.stat().st_ino}} " in line for line in open("/proc/locks")):
            break
        time.sleep(0.01)
    (folder / "bin").mkdir(parents=True)
    os.symlink(sys.executable, folder / "bin" / "python")
'''


def build_in_child(cache, results):
    try:
        results.put(matrix.build_environment("4.57", cache))
    except Exception as error:  # Two runs making one environment at once collide (without the lock).
        results.put(matrix.FailedEnvironment(error=repr(error), seconds=0.0))


@pytest.mark.skipif(not Path("/proc/locks").exists() or not hasattr(os, "fork"),
                    reason="forks, and reads who waits for a lock from /proc/locks")
def test_two_runs_make_one_environment(tmp_path, monkeypatch):
    """Two archit matrix runs needing the same environment at once: one makes it, the other waits and reuses it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text(FAKE_UV.format(python=sys.executable))
    (bin_dir / "uv").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_UV_LOG", str(tmp_path / "uv.log"))
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    runs = [context.Process(target=build_in_child, args=(tmp_path / "cache", results)) for _ in range(2)]
    for run in runs:
        run.start()
    outcomes = [results.get(timeout=120) for _ in runs]
    for run in runs:
        run.join(30)
        assert run.exitcode == 0
    assert (tmp_path / "uv.log").read_text().count("start") == 1
    assert all(isinstance(outcome, matrix.Environment) for outcome in outcomes), outcomes
    assert sorted(outcome.created for outcome in outcomes) == [False, True]
    assert outcomes[0].python == outcomes[1].python
    assert Path(outcomes[0].python).parent.parent.joinpath(".complete").exists()


def test_newest_installable_minor_skips_what_the_index_cannot_resolve():
    reasons = {"5.25": "Because only kernels<=0.17.2 is available and transformers>=5.25.0 depends on kernels>=0.19.1"}
    newest, skipped = releases.newest_installable(
        ["5.23", "5.24", "5.25"], error=lambda requirements: reasons.get(requirements[0].split("~=")[1][:-2]))
    assert newest == "5.24" and skipped == reasons


def test_resolution_error_reads_uv_and_caches(tmp_path, monkeypatch):
    calls = []
    stderr = ("  × No solution found when resolving dependencies:\n  ╰─▶ Because only kernels<=0.17.2 is available and "
              "transformers>=5.25.0 depends on kernels>=0.19.1,<0.20, we can conclude that ...\n")

    def run(command, **kwargs):
        calls.append(kwargs["input"])
        return subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(releases, "uv_command", lambda: ["uv"])
    cache = tmp_path / "resolutions.json"
    error = releases.resolution_error(["transformers~=5.25.0"], cache=cache, run=run)
    assert error.startswith("Because only kernels<=0.17.2 is available")
    assert releases.resolution_error(["transformers~=5.25.0"], cache=cache, run=run) == error
    assert calls == ["transformers~=5.25.0"]  # The second answer came from the cache.
    offline = subprocess.CompletedProcess([], 2, "", "error: Failed to fetch: https://pypi.org/simple/transformers/")
    assert releases.resolution_error(["transformers~=5.24.0"], cache=cache, run=lambda c, **k: offline) is None


# ---------------------------------------------------------------------------------------------------------------------
# --jobs, --transformers-class, --defaults, --across-saves in this environment (fake release labels)

def this_environment(failing=()):
    """build_environment for fake release labels: this interpreter, or an environment that failed for ``failing``."""
    def build(label, cache):
        if label in failing:
            return matrix.FailedEnvironment(error=f"no {label}", seconds=0.1)
        return matrix.Environment(python=sys.executable, seconds=0.0, created=False)
    return build


def without_timings(value):
    """matrix.json without its timing fields (matrix.TIMING_SUFFIX)."""
    if isinstance(value, dict):
        return {key: without_timings(item) for key, item in value.items() if not key.endswith(matrix.TIMING_SUFFIX)}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def save_bfloat16_tagger(directory):
    """A token classifier saved in bfloat16: its config.json records the dtype."""
    model = build_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=3))
    model.to(torch.bfloat16).save_pretrained(str(directory))


def replayed(recorded: Path, out: Path, end_first: str):
    """run_worker answering what the workers of the run into ``recorded`` answered (their logits files copied), each
    release's worker ending only after ``end_first``'s has: releases end in another order than they started in."""
    ended = threading.Event()

    def run_worker(python, probes, folder, atol, *more, **keywords):
        label = folder.name if folder.name != "across" else folder.parent.name
        if label != end_first:
            assert ended.wait(timeout=60), f"{end_first} did not start while {label} ran: not run concurrently"
        shutil.copytree(recorded / folder.relative_to(out), folder, dirs_exist_ok=True)
        if label == end_first:
            ended.set()
        return json.loads((folder / "result.json").read_text())
    return run_worker


def test_parallel_runs_write_the_same_json_as_serial_ones(tmp_path, monkeypatch):
    """--jobs 1 and --jobs 3 over three fake releases (one whose environment fails), with --defaults and
    --across-saves: the same matrix.json but for the *_seconds timings, oldest release first in both, the failed
    release keeping the version asked for. The probe is named as a title is (``runs/tagger``): its files and saves are
    named ``runs--tagger``."""
    save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=5), tmp_path / "ckpt")
    monkeypatch.setattr(matrix, "build_environment", this_environment(failing={"1.0"}))
    probes = [{"name": "runs/tagger", "checkpoint": str(tmp_path / "ckpt"), "base": "RobertaBaseModel",
               "task": "ForSingleLabelTokenClassification", "head_config": None}]
    written, progress = {}, {}
    for jobs in (1, 3):
        out, lines = tmp_path / f"jobs{jobs}", []
        modes = matrix.MatrixModes(jobs=jobs, defaults=True, across_saves=True)
        rows = matrix.run_matrix(probes, ["2.0", "1.0", "3.0"], out, tmp_path / "cache", 1e-5, None, lines.append,
                                 modes)
        matrix.write_outputs(rows, out, 1e-5, "runs/tagger")
        written[jobs], progress[jobs] = json.loads((out / "matrix.json").read_text()), lines
        assert len(lines) == 6  # a line per release as it ends, then per release loading the saves
        monkeypatch.setattr(matrix, "run_worker", replayed(tmp_path / "jobs1", tmp_path / "jobs3", end_first="2.0"))
    assert without_timings(written[1]) == without_timings(written[3])
    assert [line.split()[1] for line in progress[1]][:3] == [transformers.__version__] * 2 + ["1.0"]  # newest first
    assert sorted(line.split()[1] for line in progress[3][:3]) == ["1.0"] + [transformers.__version__] * 2
    assert written[1] != without_timings(written[1])  # there were timings to drop
    for rows in written.values():
        original = [(row["release"], row["mode"]) for row in rows if row["saved_on"] is None]
        assert original == [("1.0", "pinned"), ("1.0", "defaults"), ("2.0", "pinned"), ("2.0", "defaults"),
                            ("3.0", "pinned"), ("3.0", "defaults")]
        grid = [(row["saved_on"], row["loaded_on"], row["status"]) for row in rows if row["saved_on"] is not None]
        assert grid == [("1.0", "1.0", FAILS), ("1.0", "2.0", FAILS), ("1.0", "3.0", FAILS),
                        ("2.0", "1.0", FAILS), ("2.0", "2.0", SAME), ("2.0", "3.0", SAME),
                        ("3.0", "1.0", FAILS), ("3.0", "2.0", SAME), ("3.0", "3.0", SAME)]
        failed = rows[0]
        assert (failed["transformers"], failed["error"], failed["status"]) == ("1.0", "environment: no 1.0", FAILS)
        assert rows[2]["transformers"] == transformers.__version__ and rows[4]["reference"] == rows[4]["transformers"]
        assert rows[-1]["error"] is None and rows[6 + 1]["error"] == "no save: the save on 1.0 failed"
    saved = tmp_path / "jobs1" / "saves" / "3.0" / "runs--tagger"
    assert (saved / "config.json").exists()  # archit's own save, loaded by every release
    page = (tmp_path / "jobs3" / "matrix.html").read_text()
    assert '<p class="broken">First broken pair: saved on 1.0, loaded on 1.0</p>' in page


def test_transformers_class_and_defaults_in_this_environment(tmp_path, monkeypatch):
    """--transformers-class auto --defaults on a bfloat16 checkpoint, this environment standing for a release: the
    pinned load is transformers' own class in float32 with eager attention and gives its logits; the defaults load
    is what a plain from_pretrained(checkpoint) gives here, its dtype and attention recorded, and its difference from
    the pinned logits the one computed here independently."""
    save_bfloat16_tagger(tmp_path / "bf16")
    monkeypatch.setattr(matrix, "build_environment", this_environment())
    probes = [{"name": "bf16", "checkpoint": str(tmp_path / "bf16"), "transformers_class": "auto"}]
    modes = matrix.MatrixModes(jobs=1, transformers_class="auto", defaults=True)
    pinned, defaults = matrix.run_matrix(probes, ["2.0"], tmp_path / "out", tmp_path / "cache", 1e-5, None,
                                         modes=modes)
    assert (pinned["loader"], pinned["transformers_class"], pinned["mode"]) == (
        "transformers", "RobertaForTokenClassification", "pinned")
    assert (pinned["dtype"], pinned["attn_implementation"], pinned["status"]) == ("float32", "eager", SAME)
    inputs = fixed_inputs(tasks.ForSingleLabelTokenClassification, 99)
    own = transformers_reference(transformers.RobertaForTokenClassification, tmp_path / "bf16")
    with torch.no_grad():
        expected = own(**inputs).logits
    assert_same_outputs(load_file(str(tmp_path / "out" / pinned["logits_file"]))["logits"], expected)
    plain = transformers.RobertaForTokenClassification.from_pretrained(str(tmp_path / "bf16")).eval()
    with torch.no_grad():
        plain_logits = plain(**inputs).logits.float()
    assert (defaults["mode"], defaults["dtype"]) == ("defaults", str(plain.dtype).replace("torch.", ""))
    assert defaults["attn_implementation"] == plain.config._attn_implementation
    assert defaults["pinned_max_abs_diff"] == pytest.approx(float((plain_logits - expected).abs().max()), abs=1e-6)
    assert defaults["status"] == SAME and defaults["reference"] == transformers.__version__


def test_defaults_diagnosis_and_its_renderings():
    """The diagnosis a maintainer needs, in the last line, the Markdown and the HTML: differs with defaults, same
    when pinned, naming the first release whose defaults differ and what each release chose."""
    rows = []
    for release, dtype, diff, versus in (("4.57.6", "float32", 0.02, 0.0), ("5.0.0", "bfloat16", 0.0, 0.02),
                                         ("5.23.0", "bfloat16", 0.0, 0.02)):
        rows.append({**row(release, reference="5.0.0"), "mode": "pinned", "dtype": "float32",
                     "attn_implementation": "eager"})
        defaults = {**row(release, diff=diff, reference="5.0.0"), "mode": "defaults", "dtype": dtype,
                    "attn_implementation": "sdpa", "pinned_max_abs_diff": versus}
        defaults["status"] = classify(defaults, 1e-5)
        rows.append(defaults)
    diagnosis = ("differs with defaults, same when pinned: first on 4.57.6 (its defaults: float32, sdpa attention; "
                 "reference 5.0.0's: bfloat16, sdpa attention); the defaults give other outputs than the pinned load "
                 "on 5.0.0, 5.23.0")
    assert summary_line(rows, 1e-5) == f"NOT THE SAME: {diagnosis}."
    markdown = render_markdown(rows, 1e-5, "tagger")
    assert f"Diagnosis: {diagnosis}." in markdown
    assert "| 4.57.6 | same (0) | differs (0.02) | 0 | float32 | sdpa |  |" in markdown
    assert "| 5.23.0 | same (0) | same (0) | 0.02 | bfloat16 | sdpa |  |" in markdown
    page = render_html(rows, 1e-5, "tagger")
    assert f'<p class="broken">Diagnosis: {diagnosis}.</p>' in page.replace("&#x27;", "'")
    assert page.count('<td class="differs"') == 1 + 2  # the defaults cell of 4.57.6; defaults vs pinned twice
    same = [{**r, "status": SAME, "max_abs_diff": 0.0} for r in rows]
    assert summary_line(same, 1e-5).endswith("; the same with each release's defaults.")


def across(saved_on, loaded_on, status, error=None):
    result = {**row(loaded_on, ok=status != FAILS, diff=0.5 if status == DIFFERS else 0.0, error=error),
              "saved_on": saved_on, "loaded_on": loaded_on, "mode": "pinned"}
    result["status"] = classify(result, 1e-5)
    return result


def test_across_saves_grid_names_the_first_broken_pair():
    """Saves by rows, loads by columns; the first broken pair (oldest save, then oldest load) named above the grid
    and in the last line, its row and cell in bold (Markdown) or bold and outlined (HTML)."""
    versions = ("4.36.2", "4.57.6", "5.23.0")
    rows = [row(release) for release in versions]
    rows += [across(saved, loaded, DIFFERS if saved == "4.57.6" and loaded != "4.36.2" else
                    FAILS if (saved, loaded) == ("5.23.0", "4.36.2") else SAME,
                    error="KeyError: x" if (saved, loaded) == ("5.23.0", "4.36.2") else None)
             for saved in versions for loaded in versions]
    assert summary_line(rows, 1e-5) == "NOT THE SAME: first broken pair: saved on 4.57.6, loaded on 4.57.6."
    markdown = render_markdown(rows, 1e-5, "tagger")
    assert "First broken pair: saved on 4.57.6, loaded on 4.57.6." in markdown
    assert "| saved on \\ loaded on | 4.36.2 | 4.57.6 | 5.23.0 |" in markdown
    assert "| 4.36.2 | same (0) | same (0) | same (0) |" in markdown
    assert "| **4.57.6** | same (0) | **differs (0.5)** | differs (0.5) |" in markdown
    assert "| 5.23.0 | fails | same (0) | same (0) |" in markdown
    assert "- saved on 5.23.0, loaded on 4.36.2: `KeyError: x`" in markdown
    page = render_html(rows, 1e-5, "tagger")
    assert "http" not in page and "<script" not in page
    grid = page[page.index("<h2>Across saves</h2>"):]
    assert grid.index('<p class="broken">First broken pair: saved on 4.57.6, loaded on 4.57.6</p>') \
        < grid.index("<table")
    assert '<tr class="first-broken"><th>4.57.6</th><td class="same"' in grid
    assert grid.count('class="differs first-broken"') == 1 and grid.count('<td class="differs"') == 1
    assert grid.count('<td class="fails"') == 1 and grid.count('<td class="same"') == 6
    fine = [r if r.get("saved_on") is None else {**r, "status": SAME, "ok": True, "max_abs_diff": 0.0} for r in rows]
    assert summary_line(fine, 1e-5).endswith("; every release loads every release's save the same.")
    assert "No broken pair." in render_markdown(fine, 1e-5, "tagger")


@pytest.mark.parametrize("args, message", [
    (["--transformers-class", "auto", "--base", "RobertaBaseModel", "--transformers", "5.23"],
     "--transformers-class loads with transformers' own class: --base, --task and --head-config are archit's"),
    (["--base", "RobertaBaseModel", "--task", "ForMaskedLM", "--transformers", "5.23", "--jobs", "0"],
     "--jobs must be 1 or more, not 0."),
])
def test_bad_mode_arguments_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "ckpt").mkdir()
    code = main(["matrix", str(tmp_path / "ckpt"), *args, "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
