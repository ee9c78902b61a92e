"""The ``archit`` command as a guide (issue 22): ``--help`` and ``--version`` without torch or transformers, a damaged
checkpoint refused before any environment is made, releases the index does not have refused with the nearest ones,
``--base``/``--task`` inferred as ``archit inspect`` plans, wrong names answered with the valid ones and a close match,
``inspect`` on a head saved by ``saveHead``, and the matrix report's title. Every message is checked with its exit code,
in-process (``archit.cli.main.main``); the import checks run in a fresh interpreter."""
import subprocess
import sys
from pathlib import Path

import pytest

from archit.cli.main import main

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


