"""The ``archit`` command as a guide (issue 22): ``--help`` and ``--version`` without torch or transformers, a damaged
checkpoint refused before any environment is made, releases the index does not have refused with the nearest ones,
``--base``/``--task`` inferred as ``archit inspect`` plans, wrong names answered with the valid ones and a close match,
``inspect`` on a head saved by ``saveHead``, and the matrix report's title. Every message is checked with its exit code,
in-process (``archit.cli.main.main``); the import checks run in a fresh interpreter."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from archit.cli import matrix, releases
from archit.cli.main import main
from tests.test_cli import assert_one_line_error, roberta_token_classifier

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

    def run(probes, labels, out, cache, atol, reference=None, progress=None):
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
