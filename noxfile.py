"""Test archit on every transformers minor release, one nox session per minor.

    nox                          lint + the era-boundary minors (what CI runs: ``bash .ci/run``)
    nox -t full                  every minor from 4.36 to the newest 5.x
    nox -s "tests(tf4.40)"       one minor; ``nox -l`` lists them all
    nox -s "tests(tf4.50)" -- tests/test_save.py -x     pytest arguments after ``--``
    nox -t bench                 the loading and saving benchmarks on 4.49 and the newest minor
    nox -t fuzz                  crash-consistency and damaged-checkpoint tests at length (4.36, newest)

Every session installs the newest patch of its minor (``transformers~=X.Y.0``), the companions that
minor was released with (see ``COMPANION_CAPS``), one fixed torch build, pytest and archit itself, all
in one resolve.

Torch: every session uses the same build, ``torch==2.13.0`` (override: ``ARCHIT_TORCH="torch==2.5.1"``).
uv does not read pip's configuration, so the ``find-links`` that pip is configured with (``PIP_FIND_LINKS``
or ``pip config``) is passed on explicitly; where a local CPU wheel lies (``/opt/wheels`` on the dev and CI
machines) it wins over the registry's CUDA build, and no ``nvidia-*`` package gets installed. Without a
configured find-links the registry's torch is used.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nox

nox.needs_version = ">=2024.4.15"  # the "uv|virtualenv" fallback syntax
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.tags = ["lint", "eras"]  # plain `nox`; any -s/-t/-k on the command line replaces this

# Every minor with a release on PyPI: 4.36-4.57 and 5.0-5.24. Add the new one when transformers ships it.
TRANSFORMERS_MINORS = (*(f"4.{m}" for m in range(36, 58)), *(f"5.{m}" for m in range(0, 25)))
NEWEST = TRANSFORMERS_MINORS[-1]
# The first and last minor of each era that compat/ has a backend for (see CONTRIBUTING.md), plus the newest.
ERA_BOUNDARIES = ("4.36", "4.49", "4.50", "4.57", "5.0", NEWEST)

TORCH = os.environ.get("ARCHIT_TORCH", "torch==2.13.0")

# Period-correct companions.
# transformers' own metadata already keeps huggingface_hub and tokenizers on the lines each minor was
# built for (hub >=0.19,<1.0 on 4.x and >=1.0 on 5.x; one tokenizers 0.x range per minor), and
# safetensors has kept its API. What that metadata leaves open, and what later changed under it, is
# capped here. Each cap is the companion line that was current when the minor came out (checked by
# resolving as of each minor's release day with `uv pip install --exclude-newer DATE`):
#   - accelerate 1.0 (Oct 2024) removed `Accelerator(dispatch_batches=...)`, which the Trainer of
#     4.36-4.39 still passes; 4.40 and later work with accelerate 1.x.
#   - numpy 2.0 (Jun 2024): transformers supports it from 4.43 on (4.42 pins numpy<2 itself).
# Why a table rather than resolving everything with `--exclude-newer DATE`: torch 2.13 and its own
# dependencies (typing-extensions, sympy, ...) are newer than every old cutoff and would each need an
# exemption, archit's floor accelerate>=0.26 rules out 4.36's release-day accelerate (0.25), and files
# without an upload time (find-links, many mirrors) silently escape the cutoff.
COMPANION_CAPS = (
    # first, last minor, extra requirements
    ("4.36", "4.39", ("accelerate<1.0", "numpy<2")),
    ("4.40", "4.42", ("numpy<2",)),
)

REPORTED_PACKAGES = ("torch", "transformers", "accelerate", "huggingface_hub", "tokenizers", "safetensors", "numpy")
# Prints the resolved versions, and any nvidia-* distribution (there should be none with a CPU torch build).
REPORT_VERSIONS = f"""
import importlib.metadata as md
for name in {REPORTED_PACKAGES!r}:
    print(f"{{name:>16}} {{md.version(name)}}")
nvidia = sorted(d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].startswith("nvidia"))
print(f"{{'nvidia-*':>16}} {{', '.join(nvidia) or 'none'}}")
"""
LINT_PATHS = ("archit", "compat", "tests", "benchmarks", "noxfile.py")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# The tests' tiny models run several times faster on one thread than on a few contended ones (a session on 2 cores:
# ~50 s instead of ~184 s). tests/conftest.py calls torch.set_num_threads(1) too, so that a plain `pytest` is as fast.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _minor_key(minor: str) -> tuple[int, int]:
    major, _, rest = minor.partition(".")
    return int(major), int(rest)


def _companions(minor: str) -> list[str]:
    """The extra caps for one transformers minor."""
    return [
        requirement
        for first, last, requirements in COMPANION_CAPS
        if _minor_key(first) <= _minor_key(minor) <= _minor_key(last)
        for requirement in requirements
    ]


def _pip_find_links() -> list[str]:
    """The find-links locations pip is configured with (env var, then pip's config files), or none."""
    value = os.environ.get("PIP_FIND_LINKS", "")
    if not value:
        for key in ("global.find-links", "install.find-links"):
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "pip", "config", "get", key],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
            except (OSError, subprocess.SubprocessError):
                break
            if done.returncode == 0 and done.stdout.strip():
                value = done.stdout
                break
    return value.split()


def _install(session: nox.Session, transformers_minor: str) -> None:
    """Install torch, one transformers minor with its companions, pytest and archit, in one resolve."""
    find_links = [arg for location in _pip_find_links() for arg in ("--find-links", location)]
    session.install(
        *find_links,
        TORCH,
        f"transformers~={transformers_minor}.0",
        *_companions(transformers_minor),
        "pytest",
        "hypothesis",
        "-e",
        ".",
    )
    session.log("resolved versions:")
    session.run("python", "-c", REPORT_VERSIONS, silent=False, log=False)


def _run_tests(session: nox.Session, transformers_minor: str) -> None:
    _install(session, transformers_minor)
    session.run("pytest", "--strict-markers", *(session.posargs or ("tests",)), env={**OFFLINE, **ONE_THREAD})


def _minor_params(minors: tuple[str, ...]) -> list:
    return [
        nox.param(minor, id=f"tf{minor}", tags=["full", *(["eras"] if minor in ERA_BOUNDARIES else [])])
        for minor in minors
    ]


@nox.session(tags=["lint"])
def lint(session: nox.Session) -> None:
    """Run ruff over the code (configuration in pyproject.toml)."""
    session.install("ruff")
    session.run("ruff", "check", *(path for path in LINT_PATHS if os.path.exists(path)), *session.posargs)


@nox.session(tags=["lint"])
def package(session: nox.Session) -> None:
    """Build the wheel and check what it installs: archit's own package alone (the compat/ folder as archit._compat,
    never a top-level module a user's compat.py could shadow), with every package folder of the repository in it."""
    session.install("build", "setuptools>=64")
    out = Path(session.create_tmp()) / "wheel"
    session.run("python", "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), silent=True)
    (wheel,) = out.glob("archit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    stray = sorted({n.split("/")[0] for n in names} - {"archit"} - {n.split("/")[0] for n in names if ".dist-info/" in n})
    if stray:
        session.error(f"{wheel.name} installs top-level names other than archit: {stray}")
    expected = {f"archit/{p.parent.relative_to('archit').as_posix()}/__init__.py".replace("/./", "/")
                for p in Path("archit").rglob("__init__.py")}
    expected |= {f"archit/_compat/{p.name}" for p in Path("compat").glob("*.py")}
    missing = sorted(expected - set(names))
    if missing:
        session.error(f"{wheel.name} lacks {missing}: list the package in pyproject.toml's [tool.setuptools] packages.")
    session.log(f"{wheel.name}: {len(names)} files, all under archit/")


@nox.session
@nox.parametrize("transformers_minor", _minor_params(TRANSFORMERS_MINORS))
def tests(session: nox.Session, transformers_minor: str) -> None:
    """Run the test suite on the newest patch of one transformers minor, offline."""
    _run_tests(session, transformers_minor)


@nox.session(tags=["fuzz"])
@nox.parametrize("transformers_minor", [nox.param(m, id=f"tf{m}") for m in ("4.36", NEWEST)])
def fuzz(session: nox.Session, transformers_minor: str) -> None:
    """The crash-consistency and damaged-checkpoint tests at length (ARCHIT_THOROUGH=1: a SIGKILL at every file
    operation of every layout, ten times the hypothesis examples); the default sessions run a bounded sample."""
    _install(session, transformers_minor)
    session.run("pytest", *(session.posargs or ("tests/test_crash_saves.py", "tests/test_damaged_checkpoints.py")),
                env={**OFFLINE, **ONE_THREAD, "ARCHIT_THOROUGH": "1"})


@nox.session(tags=["bench"])
@nox.parametrize("transformers_minor", [nox.param(m, id=f"tf{m}") for m in ("4.49", NEWEST)])
def benchmark(session: nox.Session, transformers_minor: str) -> None:
    """Time checkpoint loading (benchmarks/bench_load.py) on the last 4.49-era minor and the newest, and saving
    (benchmarks/bench_save.py)."""
    _install(session, transformers_minor)
    session.run("python", "benchmarks/bench_load.py", *session.posargs, env=OFFLINE)
    session.run("python", "benchmarks/bench_save.py", env=OFFLINE)
