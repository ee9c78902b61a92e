"""Test archit on every transformers minor release, one nox session per minor.

    nox                          lint + the era-boundary minors (what CI runs: ``bash .ci/run``)
    nox -t full                  every minor from 4.36 to the newest (read from the package index)
    nox -s "tests(tf4.40)"       one minor; ``nox -l`` lists them all
    nox -s "tests(tf4.50)" -- tests/test_save.py -x     pytest arguments after ``--``
    nox -t bench                 the loading, saving and generation benchmarks on 4.49 and the newest minor
    nox -t fuzz                  crash-consistency, damaged-checkpoint and checksum tests at length (4.36, newest)
    nox -t distributed           the 2-process (gloo) tests: FSDP loading and saving, the Trainer with FSDP, tensor
                                 parallelism, on 4.36, 4.57, 5.0 and the newest minor
    nox -s matrix                ``archit matrix`` end to end on two releases (the slow tests; tag "eras", so CI runs it)
    nox -s report                ``archit matrix`` over the probe checkpoints on every minor: ``report/`` and the
                                 README's compatibility table; ``nox -s report -- 4.36 5.24`` limits the minors

The list of minors, the companion caps and the torch/find-links logic live in ``archit/cli/releases.py`` (the
standard library and ``packaging`` only, which nox itself depends on; loaded here by file path because nox's own Python
need not have archit installed); ``archit matrix`` uses the same module, so its environments are the sessions'
environments. The minors are the newest patch of each minor from 4.36 on as the package index lists them
(``PIP_INDEX_URL`` / pip's ``index-url``, else PyPI; asked with a 3 s timeout at most once an hour, the answer cached in
``~/.cache/archit/releases.json``), so a new transformers minor gets a session with no change here; offline (or with ``ARCHIT_RELEASES_OFFLINE=1``) the built-in ``TRANSFORMERS_MINORS`` stand. A minor whose
requirements the index cannot resolve (a release that needs a companion release the index does not carry yet) is
skipped, and the newest minor that resolves is the newest era boundary.

Every session installs the newest patch of its minor (``transformers~=X.Y.0``), the companions that minor was released
with (``COMPANION_CAPS``), one fixed torch build, pytest and archit itself, all in one resolve.

Torch: every session uses the same build, ``torch==2.13.0`` (override: ``ARCHIT_TORCH="torch==2.5.1"``). uv does not
read pip's configuration, so the ``find-links`` that pip is configured with (``PIP_FIND_LINKS`` or ``pip config``) is
passed on explicitly; where a local CPU wheel lies (``/opt/wheels`` on the dev and CI machines) it wins over the
registry's CUDA build, and no ``nvidia-*`` package gets installed. Without a configured find-links the registry's torch
is used.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import nox

nox.needs_version = ">=2024.4.15"  # the "uv|virtualenv" fallback syntax
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.tags = ["lint", "eras"]  # plain `nox`; any -s/-t/-k on the command line replaces this


def _load_module(path: str):
    """An archit module that imports only the standard library and ``packaging`` (``archit/cli/releases.py``), loaded by
    file path: nox's own Python may not have archit (or torch) installed, but has ``packaging``, which nox requires."""
    spec = importlib.util.spec_from_file_location(f"archit_{Path(path).stem}", Path(__file__).parent / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


releases = _load_module("archit/cli/releases.py")
DISCOVERED, DISCOVERED_FROM = releases.discover_releases()
TRANSFORMERS_MINORS = tuple(DISCOVERED)  # every minor from 4.36 on with a final release on the index
# The newest minor the index can install: a new release may need a companion release the index does not carry yet
# (transformers 5.25 needs kernels>=0.19.1; some mirrors stop at 0.17.2). Asked of uv, cached for six hours.
NEWEST, UNINSTALLABLE = releases.newest_installable(TRANSFORMERS_MINORS)
# The first and last minor of each era that compat/ has a backend for (see CONTRIBUTING.md), plus the newest.
ERA_BOUNDARIES = ("4.36", "4.49", "4.50", "4.57", "5.0", NEWEST)
TORCH = releases.torch_requirement()

REPORTED_PACKAGES = ("torch", "transformers", "accelerate", "huggingface_hub", "tokenizers", "safetensors", "numpy",
                     "peft")
# Prints the resolved versions ("-" for one a session does not install: peft in the downstream sessions), and any
# nvidia-* distribution (there should be none with a CPU torch build).
REPORT_VERSIONS = f"""
import importlib.metadata as md
for name in {REPORTED_PACKAGES!r}:
    try:
        print(f"{{name:>16}} {{md.version(name)}}")
    except md.PackageNotFoundError:
        print(f"{{name:>16}} -")
nvidia = sorted(d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].startswith("nvidia"))
print(f"{{'nvidia-*':>16}} {{', '.join(nvidia) or 'none'}}")
"""
FUZZ_TESTS = ("tests/test_crash_saves.py", "tests/test_damaged_checkpoints.py", "tests/test_integrity.py",
              "tests/test_save_fast.py")
LINT_PATHS = ("archit", "compat", "tests", "benchmarks", "tools", "downstream", "noxfile.py")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# The tests' tiny models run several times faster on one thread than on a few contended ones (a session on 2 cores:
# ~50 s instead of ~184 s). tests/conftest.py calls torch.set_num_threads(1) too, so that a plain `pytest` is as fast.
# The suite itself runs on one core that way, so the tests sessions spread it over a pytest-xdist worker per core
# (`-n`; on 2 cores 94 s instead of 167 s); arguments after `--` replace that, e.g. `-- tests/test_save.py -x`.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _install(session: nox.Session, transformers_minor: str) -> None:
    """Install torch, one transformers minor with its companions, pytest, hypothesis, the peft release that works with
    that minor (``releases.PEFT_LINES``) and archit, in one resolve."""
    session.install(
        *releases.find_links_args(),
        TORCH,
        releases.transformers_requirement(transformers_minor),
        *releases.companions(transformers_minor),
        "pytest",
        "pytest-xdist",
        "hypothesis",
        releases.peft_requirement(transformers_minor),
        "-e",
        ".",
    )
    session.log("resolved versions:")
    session.run("python", "-c", REPORT_VERSIONS, silent=False, log=False)


def _run_tests(session: nox.Session, transformers_minor: str) -> None:
    if transformers_minor in UNINSTALLABLE:
        session.skip(f"transformers {transformers_minor} cannot be installed from this package index: "
                     f"{UNINSTALLABLE[transformers_minor]}")
    _install(session, transformers_minor)
    session.run("pytest", "--strict-markers", *(session.posargs or ("-n", str(os.cpu_count() or 1), "tests")),
                env={**OFFLINE, **ONE_THREAD})


def _minor_params(minors: tuple[str, ...]) -> list:
    return [
        nox.param(minor, id=f"tf{minor}", tags=["full", *(["eras"] if minor in ERA_BOUNDARIES else [])])
        for minor in minors
    ]


@nox.session(tags=["lint"])
def lint(session: nox.Session) -> None:
    """Run ruff over the code and mypy over archit/ and compat/ (configuration in pyproject.toml). mypy reads compat/
    as the package it installs as, archit._compat, in a tree of links (archit/'s entries and _compat -> compat/); it
    prints paths in that tree: archit/_compat/x.py is compat/x.py."""
    session.install("ruff", "mypy")
    session.run("ruff", "check", *(path for path in LINT_PATHS if os.path.exists(path)), *session.posargs)
    tree = Path(session.create_tmp()) / "typecheck"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "archit").mkdir(parents=True)
    for entry in Path("archit").iterdir():
        (tree / "archit" / entry.name).symlink_to(entry.resolve())
    (tree / "archit" / "_compat").symlink_to(Path("compat").resolve())
    config = str(Path("pyproject.toml").resolve())
    with session.chdir(tree):
        session.run("mypy", "--config-file", config, "--no-incremental", "-p", "archit")


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
    """The crash-consistency, damaged-checkpoint and checksum tests at length (ARCHIT_THOROUGH=1: a SIGKILL at every
    file operation of every layout and save path, 200 loads against a save paused at each file operation in turn, ten
    times the hypothesis examples: bit flips, damaged headers, indexes and configs); the default sessions run a bounded
    sample."""
    _install(session, transformers_minor)
    session.run("pytest", *(session.posargs or FUZZ_TESTS), env={**OFFLINE, **ONE_THREAD, "ARCHIT_THOROUGH": "1"})


@nox.session(tags=["bench"])
@nox.parametrize("transformers_minor", [nox.param(m, id=f"tf{m}") for m in ("4.49", NEWEST)])
def benchmark(session: nox.Session, transformers_minor: str) -> None:
    """Time checkpoint loading (benchmarks/bench_load.py) on the last 4.49-era minor and the newest, saving
    (benchmarks/bench_save.py) and generation (benchmarks/bench_generate.py)."""
    _install(session, transformers_minor)
    session.run("python", "benchmarks/bench_load.py", *session.posargs, env=OFFLINE)
    session.run("python", "benchmarks/bench_save.py", env=OFFLINE)
    session.run("python", "benchmarks/bench_generate.py", env=OFFLINE)


@nox.session(tags=["eras"])
def matrix(session: nox.Session) -> None:
    """The slow tests: ``archit matrix`` end to end (tests/test_matrix_slow.py), building environments for three
    releases (4.36, 4.57 and 5.23) with uv, once for the module: archit's load, transformers' own class with each
    release's defaults, and the across-saves grid, two releases at a time."""
    _install(session, NEWEST)
    session.install("uv")
    session.run("pytest", "--strict-markers", "-m", "slow", *(session.posargs or ("tests",)),
                env={**OFFLINE, **ONE_THREAD})


# 5.15: the one release whose loader shards both ways (DTensor placeholders, and the styles' plain local slices of
# 5.1-5.14); 5.16-5.21 moved the parallel-style registry (compat/tf500.py).
@nox.session(tags=["distributed"])
@nox.parametrize("transformers_minor", [nox.param(m, id=f"tf{m}") for m in ("4.36", "4.57", "5.0", "5.15", NEWEST)])
def distributed(session: nox.Session, transformers_minor: str) -> None:
    """The tests that run 2 CPU processes in a gloo group (``pytest -m distributed``, ``tests/ranks.py``): FSDP's
    RAM-efficient loading, saves under FSDP1/FSDP2, the Trainer with FSDP, tensor parallelism, DeepSpeed ZeRO-3 (deepspeed
    installed on the newest release only, built without its compiled ops), against transformers' own classes doing the
    same on the same release. Not in the default run (``nox -t distributed``): each test starts two
    interpreters that import torch and transformers."""
    if transformers_minor in UNINSTALLABLE:
        session.skip(f"transformers {transformers_minor} cannot be installed from this package index: "
                     f"{UNINSTALLABLE[transformers_minor]}")
    _install(session, transformers_minor)
    if transformers_minor == NEWEST:  # ZeRO-3 for real on the CPU, on the newest release (no dependency of archit).
        session.install(*releases.find_links_args(), TORCH, "deepspeed", env={"DS_BUILD_OPS": "0"})
    session.run("pytest", "--strict-markers", "-m", "distributed", *(session.posargs or ("tests",)),
                env={**OFFLINE, **ONE_THREAD})


@nox.session
def report(session: nox.Session) -> None:
    """``archit matrix`` over the probe checkpoints (``tools/make_probes.py``: every task, every base family of the
    README) on every minor (``nox -s report -- 4.36 5.24``: those minors): writes ``report/`` (matrix.json, .md,
    .html: one column per probe) and the README's compatibility table between its marker comments.

    Releases run ``--jobs N`` at once (environments made and workers run concurrently; default: the machine's cores, or
    ``ARCHIT_REPORT_JOBS=N``): ``nox -s report -- --jobs 1 4.36 5.24``. A list, ``--jobs 1,2`` (or
    ``ARCHIT_REPORT_JOBS=1,2``), runs the report once per value, each from empty environments (a cache folder of its
    own in the session's tmp, so that each makes them all, as a first run does), logs the minutes each took and keeps
    the last one's report: the serial and the parallel run timed in one go."""
    _install(session, NEWEST)
    session.install("uv")
    probes = Path(session.create_tmp()) / "probes"
    session.run("python", "tools/make_probes.py", str(probes), env=OFFLINE)
    args = list(session.posargs)
    jobs = os.environ.get("ARCHIT_REPORT_JOBS", str(os.cpu_count() or 1))
    if "--jobs" in args:
        at = args.index("--jobs")
        jobs = args[at + 1]
        del args[at:at + 2]
    values = jobs.split(",")
    timings = []
    for value in values:
        cache = []
        if len(values) > 1:
            folder = Path(session.create_tmp()) / f"environments-jobs{value}"
            shutil.rmtree(folder, ignore_errors=True)
            cache = ["--cache-dir", str(folder)]
        start = time.perf_counter()
        session.run("python", "-m", "archit", "matrix", "--probes", str(probes / "probes.json"), "--transformers",
                    *(args or TRANSFORMERS_MINORS), "--out", "report", "--jobs", value, *cache, env=OFFLINE,
                    success_codes=[0, 1])
        timings.append(f"--jobs {value}: {(time.perf_counter() - start) / 60:.1f} min")
    session.run("python", "tools/readme_table.py", "report/matrix.json", "README.md")
    session.log(f"report/matrix.html, matrix.md, matrix.json; README.md's compatibility table regenerated "
                f"({'; '.join(timings)})")


# The newest LaMoTO release, archit's main downstream user (built on the published ArchIt), and what its modules that
# import archit import at their top besides LaMoTO's own requirements: tktkt (training.py, hyperparameters.py,
# backends.py, lineages.py, tasks/lm, tasks/qa.py), fiject (training.py), modest (tasks/mbr.py; on the index as
# modest-bauwenst) and supar (tasks/dp.py; supar_bauwenst), plus language_data: MoDeST's dataset modules call
# langcodes.find() at import, which needs langcodes' "data" extra, and modest-bauwenst names plain langcodes. Each the
# newest release on the index when this was written.
LAMOTO = "lamoto==2026.10.0"
LAMOTO_COMPANIONS = ("tktkt==2026.10.0", "fiject==2026.3.1", "modest-bauwenst==2026.10.1", "supar_bauwenst==1.2.1",
                     "language_data==1.4.0")


@nox.session(tags=["downstream"])
@nox.parametrize("transformers_minor", [nox.param(m, id=f"tf{m}") for m in ("4.49", "4.57", NEWEST)])
def downstream(session: nox.Session, transformers_minor: str) -> None:
    """LaMoTO 2026.10.0 on this archit, unchanged (``downstream/lamoto_smoke.py``): import every LaMoTO module that
    imports archit, then three few-step trainings on tiny local checkpoints (class-weighted token classification through
    LaMoTO's MBR task, sequence classification from a transformers ``RobertaForSequenceClassification`` checkpoint as
    LaMoTO's training.py decides it, dependency parsing); fails when any of them fails. Not in the default run:
    ``nox -t downstream``; ``nox -s "downstream(tf4.57)" -- dp`` runs the imports and one training.

    One resolve: torch, the minor and its companions, LaMoTO with its own requirements as it declares them, the
    companions above and ``-e .``. LaMoTO's own pins install unchanged on every minor here (its ``datasets>=5.0.0`` too:
    4.49's huggingface_hub<1.0 gets datasets 5.0.x, which still allows hub 0.x). Nothing in the resolve requires
    ``archit``, so this checkout is the archit LaMoTO imports (the script checks ``archit.__file__``). LaMoTO's
    ``[all]`` extra is not installed: it names ``archit[all]`` (the published ArchIt, whose ``transformers<=4.49.0``
    pin would replace ours), ``modest[all]`` (on the index ``modest`` is another project, a "modular estimator"
    without ``modest.interfaces``; MoDeST is ``modest-bauwenst``) and ``tktkt[all]`` (tokeniser backends none of these
    modules import). tktkt does not import on transformers 5 (2026.10.0, like 2026.8.1 and 2026.5.1, imports the removed
    ``transformers.SpecialTokensMixin``), and LaMoTO's ModelTrainer and DP preprocessing predate transformers 4.5x and
    5.x: the script goes around those, saying so, so that only archit's own failures fail the session."""
    session.install(
        *releases.find_links_args(),
        TORCH,
        releases.transformers_requirement(transformers_minor),
        *releases.companions(transformers_minor),
        LAMOTO,
        *LAMOTO_COMPANIONS,
        "-e",
        ".",
    )
    session.log("resolved versions:")
    session.run("python", "-c", REPORT_VERSIONS, silent=False, log=False)
    session.run("python", "downstream/lamoto_smoke.py", *session.posargs,
                env={**OFFLINE, **ONE_THREAD, "WANDB_MODE": "disabled"})
