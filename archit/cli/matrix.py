"""``archit matrix CHECKPOINT --base CLASS --task CLASS``: does a checkpoint load and compute the same on every
transformers release? One isolated environment per release (made with uv, cached), one worker process in each
(``archit.cli.matrix_worker``) loading the checkpoint and running a fixed input, and a comparison of every release's
logits with the reference release's.

Each environment gets, in one resolve and exactly as the noxfile's sessions do (``archit.cli.releases``): the torch
build (``ARCHIT_TORCH``, found through pip's find-links), the release of transformers, its period-correct companions,
and archit itself: from a source checkout, archit's source tree as an editable install (so that the worker runs the
code being developed, and a change needs no new environment); from an installed archit (a wheel), archit's declared
dependencies and a copy of the installed package itself, so that the worker runs exactly the archit that runs the
command, published or not. The environment is cached under ``--cache-dir`` (default ``~/.cache/archit/matrix``) in a folder keyed by all
of these; a second run reuses it. The worker runs in the current folder with it on ``PYTHONPATH``, so that a
``package.module:Class`` of the user's own is importable.

Besides archit's pinned load (``MatrixModes``): ``--transformers-class`` loads with transformers' own class instead,
``--defaults`` also as a plain ``from_pretrained(checkpoint)`` does on each release, ``--across-saves`` has every
release load every release's save (``OUT/saves/<release>/<probe>``); ``--jobs N`` runs N releases at once. Rows are
compared once every release has ended, so ``matrix.json`` is the same whatever ``--jobs`` but for the fields ending in
``_seconds`` (``TIMING_SUFFIX``)."""
import hashlib
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple, Union

from safetensors.torch import load_file

from .. import __version__ as archit_version
from ..loading.commits import exclusive_lock
from . import guidance, releases
from .classes import CommandError, named_class
from .matrix_report import classify, diff_text, render_html, render_markdown, summary_line
from .matrix_worker import DEFAULTS, PINNED, file_name, max_abs_diff

WORKER_TIMEOUT_S = 900
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def archit_source() -> Optional[Path]:
    """The root of the source checkout this archit runs from (its ``pyproject.toml`` names archit), or ``None`` for an
    installed archit."""
    pyproject = _PACKAGE_ROOT / "pyproject.toml"
    try:
        is_checkout = 'name = "archit"' in pyproject.read_text() and (_PACKAGE_ROOT / "compat").is_dir()
    except OSError:
        return None
    return _PACKAGE_ROOT if is_checkout else None


def environment_requirements(release: str) -> List[str]:
    """What an environment for ``release`` (``4.57`` or ``4.57.3``) installs besides archit: torch, transformers and the
    companions capped for its minor (the noxfile's ``_install`` installs the same)."""
    return [releases.torch_requirement(), releases.transformers_requirement(release), *releases.companions(release)]


def _archit_requirement() -> List[str]:
    """What makes archit importable in an environment: its source checkout as an editable install, or, for an installed
    archit, its own dependencies (the package itself is copied in by ``build_environment``)."""
    source = archit_source()
    if source:
        return ["-e", str(source)]
    return [requirement for requirement in metadata.requires("archit") or () if "extra ==" not in requirement]


def _copy_installed_archit(python: Path) -> None:
    """Copy the installed archit package (``_compat`` and all) into the environment's site-packages."""
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    shutil.copytree(_PACKAGE_ROOT / "archit", Path(purelib) / "archit",
                    ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)


def environment_key(release: str) -> str:
    """The cache folder name of a release's environment: the release and a hash of everything installed into it."""
    material = {"requirements": environment_requirements(release), "archit": [archit_version, *_archit_requirement()],
                "find_links": releases.pip_find_links(), "python": sys.version.split()[0]}
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:12]
    return f"tf{release}-{digest}"


def _uv() -> List[str]:
    command = releases.uv_command()
    if command is None:
        raise CommandError("archit matrix makes its environments with uv, which is not installed (pip install uv).")
    return command


def tool_error(stderr: str) -> str:
    """The telling line of an installer's error output (uv's ``No solution found ...`` is followed by the reason)."""
    lines = [re.sub(r"^cause:\s*", "", line.strip(" ×╰─▶│\t")) for line in stderr.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("Using ", "Creating ", "Resolved ", "warning:"))]
    telling = [line for line in lines if line.startswith("Because ")] + [line for line in lines if "error" in line]
    return (telling or lines or ["the installer failed without a message"])[0]


@dataclass(frozen=True)
class Environment:
    """A release's environment, ready for the worker: its Python, the seconds it took to get it (0 when cached), and
    whether this run made it."""
    python: str
    seconds: float
    created: bool


@dataclass(frozen=True)
class FailedEnvironment:
    """A release whose environment cannot be installed: the installer's telling line (``tool_error``), and the seconds
    spent trying."""
    error: str
    seconds: float


def build_environment(release: str, cache: Path) -> Union[Environment, FailedEnvironment]:
    """The Python of ``release``'s cached environment, making the environment first when there is none; a
    ``FailedEnvironment`` when it cannot be installed. Two
    ``archit matrix`` runs that need the same environment at once make it once: the second waits for the first, under
    the lock ``<folder>.lock`` next to it (no lock without ``fcntl``: Windows)."""
    folder = cache / environment_key(release)
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if (folder / ".complete").exists():
        return Environment(python=str(python), seconds=0.0, created=False)
    cache.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(str(folder) + ".lock"):
        if (folder / ".complete").exists():  # Made by another run while this one waited.
            return Environment(python=str(python), seconds=0.0, created=False)
        return _make_environment(release, folder, python)


def _make_environment(release: str, folder: Path, python: Path) -> Union[Environment, FailedEnvironment]:
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    uv = _uv()
    steps = [[*uv, "venv", "--quiet", "--python", sys.executable, str(folder)],
             [*uv, "pip", "install", "--quiet", "--python", str(python), *releases.find_links_args(),
              *environment_requirements(release), *_archit_requirement()]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            return FailedEnvironment(error=tool_error(done.stderr), seconds=time.perf_counter() - start)
    if archit_source() is None:
        _copy_installed_archit(python)
    (folder / ".complete").write_text(json.dumps({"release": release, "requirements": environment_requirements(release),
                                                  "archit": _archit_requirement()}))
    return Environment(python=str(python), seconds=time.perf_counter() - start, created=True)


TIMING_SUFFIX = "_seconds"
"""The fields of ``matrix.json`` rows that are timings (``env_seconds``, ``run_seconds``, ``load_seconds``): the only ones
that differ between two runs of the same matrix, whatever ``--jobs``."""


@dataclass(frozen=True)
class MatrixModes:
    """What ``archit matrix`` runs besides archit's pinned load of each probe on each release. ``jobs``: releases run at
    once, environments made and workers run concurrently (default: the machine's cores); ``transformers_class``: load
    with transformers' own class instead of archit (``auto``: the class the checkpoint's ``architectures`` names, in
    each release); ``defaults``: also load as a plain ``from_pretrained(checkpoint)`` does on each release (no dtype, no
    attention implementation); ``across_saves``: every release saves the checkpoint and every release loads every
    save."""
    jobs: Optional[int] = None
    transformers_class: Optional[str] = None
    defaults: bool = False
    across_saves: bool = False

    def __post_init__(self) -> None:
        if self.jobs is not None and self.jobs < 1:
            raise CommandError(f"--jobs must be 1 or more, not {self.jobs}.")

    @property
    def worker_modes(self) -> List[str]:
        return [PINNED, DEFAULTS] if self.defaults else [PINNED]

    @property
    def workers(self) -> int:
        return self.jobs or os.cpu_count() or 1


def run_worker(python: str, probes: List[Dict[str, Any]], out: Path, atol: float, modes: Sequence[str] = (PINNED,),
               save_to: Optional[Path] = None, reload: bool = True) -> List[Dict[str, Any]]:
    """Run ``archit.cli.matrix_worker`` in an environment; its result rows (one per probe and mode), or one failed row
    per probe and mode carrying the worker's last error line when it could not run (archit not importable on that
    release, ...)."""
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "spec.json"
    spec.write_text(json.dumps({"out": str(out), "atol": atol, "probes": probes, "modes": list(modes),
                                "save_to": str(save_to) if save_to else None, "reload": reload}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "OMP_NUM_THREADS": "1"}
    env.pop("VIRTUAL_ENV", None)
    try:
        done = subprocess.run([python, "-m", "archit.cli.matrix_worker", str(spec)], capture_output=True, text=True,
                              env=env, timeout=WORKER_TIMEOUT_S)
        error = None if done.returncode == 0 else _last_line(done.stderr)
    except subprocess.TimeoutExpired:
        error = f"the worker ran longer than {WORKER_TIMEOUT_S} s"
    if error is None:
        return json.loads((out / "result.json").read_text())
    return _failed(probes, modes, error)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "the worker exited without a message"


def _row_defaults(release: str, probe: Dict[str, Any], mode: str) -> Dict[str, Any]:
    """A row's fields before the worker answers: ``transformers`` is the release asked for until the worker says which
    it is (a release whose environment failed keeps it)."""
    return {"release": release, "transformers": release, "probe": probe["name"], "mode": mode,
            "loader": "transformers" if probe.get("transformers_class") else "archit", "transformers_class": None,
            "checkpoint": probe["checkpoint"], "base": probe.get("base"), "task": probe.get("task"),
            "saved_on": None, "loaded_on": None, "ok": False, "status": None, "error": None, "era": None,
            "torch": None, "dtype": None, "attn_implementation": None, "load_seconds": None, "max_abs_diff": None,
            "reload_max_abs_diff": None, "pinned_max_abs_diff": None, "reference": None, "initialised": [],
            "unused": [], "converted": [], "saved": False, "save_folder": None, "logits_file": None}


@dataclass
class ReleaseRun:
    """One release's part of a run: its environment, the worker's result rows and the seconds it all took."""
    label: str
    env: Union[Environment, FailedEnvironment]
    results: List[Dict[str, Any]]
    seconds: float


def _concurrently(labels: Sequence[str], run: Callable[[str], ReleaseRun], jobs: int,
                  finished: Callable[[ReleaseRun], None]) -> Dict[str, ReleaseRun]:
    """``run`` for every label, ``jobs`` at once (threads, each driving its subprocesses), started in the labels' order;
    ``finished`` is called with each as it ends, in this thread."""
    runs: Dict[str, ReleaseRun] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in as_completed([pool.submit(run, label) for label in labels]):
            done = future.result()
            runs[done.label] = done
            finished(done)
    return runs


def run_matrix(probes: List[Dict[str, Any]], release_labels: Sequence[str], out: Path, cache: Path, atol: float,
               reference: Optional[str] = None, progress: Callable[[str], None] = lambda line: None,
               modes: MatrixModes = MatrixModes()) -> List[Dict[str, Any]]:
    """Every probe on every release (in every mode of ``modes``): the rows of ``matrix.json``, oldest release first
    (with ``--across-saves``, then the saved-on x loaded-on rows, oldest save first). Releases start newest first
    (``reference`` first when given), ``modes.workers`` at once; each progress line is printed as its release ends,
    compared with the reference when that is known by then. The rows are compared once all have ended, so that they
    are the same whatever the order the releases ended in (but for the ``*_seconds`` timings)."""
    order = sorted(release_labels, key=releases.version_key, reverse=True)
    if reference is not None:
        order = [reference] + [label for label in order if label != reference]
    worker_modes = modes.worker_modes

    def run_release(label: str) -> ReleaseRun:
        start = time.perf_counter()
        env = build_environment(label, cache)
        if isinstance(env, FailedEnvironment):
            results = _failed(probes, worker_modes, f"environment: {env.error}")
        else:
            save_to = out / "saves" / label if modes.across_saves else None
            results = _one_per_probe(probes, worker_modes, run_worker(env.python, probes, out / "logits" / label, atol,
                                                                      worker_modes, save_to))
        return ReleaseRun(label, env, results, time.perf_counter() - start)

    ended: Dict[str, ReleaseRun] = {}

    def finished(run: ReleaseRun) -> None:
        ended[run.label] = run
        rows = [dict(row) for label in order if label in ended for row in _release_rows(ended[label], probes,
                                                                                         worker_modes, out)]
        known = _references(rows, order, reference, probes, ended)
        own = [row for row in rows if row["release"] == run.label]
        _compare(own, known, out, atol)
        progress(_progress_line(run.label, [row for row in own if row["mode"] == PINNED], run.env, run.seconds,
                                [probe["name"] for probe in probes if probe["name"] not in known]))

    runs = _concurrently(order, run_release, modes.workers, finished)
    rows = [row for label in order for row in _release_rows(runs[label], probes, worker_modes, out)]
    references = _references(rows, order, reference, probes, runs)
    _compare(rows, references, out, atol)
    rows.sort(key=lambda row: releases.version_key(row["release"]))
    if modes.across_saves:
        rows += _across_saves(runs, rows, probes, out, atol, references, modes.workers, progress)
    return rows


def _release_rows(run: ReleaseRun, probes: List[Dict[str, Any]], modes: Sequence[str], out: Path,
                  saved_on: Optional[str] = None) -> List[Dict[str, Any]]:
    """A release's rows, one per probe and mode (in the probes' order, pinned first), from the worker's results."""
    rows = []
    for (probe, mode), result in zip(_asked(probes, modes), run.results, strict=True):
        row = {**_row_defaults(run.label, probe, mode), **{k: v for k, v in result.items() if v is not None},
               "env_seconds": round(run.env.seconds, 2), "run_seconds": round(run.seconds - run.env.seconds, 2)}
        if row["logits_file"]:
            folder = f"logits/{run.label}" + ("/across" if saved_on is not None else "")
            row["logits_file"] = f"{folder}/{row['logits_file']}"
        if saved_on is not None:
            row.update(probe=probe["probe"], saved_on=saved_on, loaded_on=run.label, checkpoint=probe["original"],
                       save_folder=f"saves/{saved_on}/{probe['probe']}")
        rows.append(row)
    return rows


def _references(rows: List[Dict[str, Any]], order: Sequence[str], reference: Optional[str],
                probes: List[Dict[str, Any]], ended: Dict[str, ReleaseRun]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Per probe whose reference is known, the reference release's row of each mode: the release ``reference``, or the
    first in ``order`` (newest first) whose pinned load succeeded; known once every release before it has ended. A
    probe without a reference (none loaded) maps to ``{}``."""
    found: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for probe in probes:
        for label in [reference] if reference is not None else order:
            if label not in ended:
                break
            own = {row["mode"]: row for row in rows if row["release"] == label and row["probe"] == probe["name"]}
            if own[PINNED]["ok"]:
                found[probe["name"]] = own
                break
        else:
            found[probe["name"]] = {}
    return found


def _compare(rows: List[Dict[str, Any]], references: Dict[str, Dict[str, Dict[str, Any]]], out: Path,
             atol: float) -> None:
    """Each row's ``reference`` and ``max_abs_diff`` (against the reference release's row of its mode; for a save
    loaded, against the reference release's pinned load of the original checkpoint), ``pinned_max_abs_diff`` (a
    defaults row against its release's pinned row) and ``status``. Rows of probes whose reference is not known yet
    stay ``unchecked``."""
    logits = _LogitsFiles(out)
    pinned = {(row["release"], row["probe"]): row for row in rows if row["mode"] == PINNED and row["saved_on"] is None}
    for row in rows:
        if row["ok"]:
            twin = references.get(row["probe"], {}).get(row["mode"])
            if twin is not None and twin["ok"]:
                row["reference"] = twin["transformers"]
                row["max_abs_diff"] = max_abs_diff(logits[row], logits[twin])
            own = pinned.get((row["release"], row["probe"]))
            if row["mode"] == DEFAULTS and own is not None and own["ok"]:
                row["pinned_max_abs_diff"] = max_abs_diff(logits[row], logits[own])
        row["status"] = classify(row, atol)
        for field in ("max_abs_diff", "pinned_max_abs_diff"):
            if row[field] == float("inf"):  # not a number JSON has
                row[field], row["error"] = None, "the logits have other names or shapes than the reference's"


class _LogitsFiles(dict):
    """The logits of rows (``matrix.json``'s ``logits_file``, under ``out``), each read once."""

    def __init__(self, out: Path):
        super().__init__()
        self.out = out

    def __getitem__(self, row: Any) -> Any:
        path = row["logits_file"]
        if path not in self:
            self[path] = load_file(str(self.out / path))
        return super().__getitem__(path)


def _across_saves(runs: Dict[str, ReleaseRun], original: List[Dict[str, Any]], probes: List[Dict[str, Any]],
                  out: Path, atol: float, references: Dict[str, Dict[str, Dict[str, Any]]], jobs: int,
                  progress: Callable[[str], None]) -> List[Dict[str, Any]]:
    """``--across-saves``, phase 2: every release (whose environment was made) loads every probe's save of every
    release, pinned; a row per saved-on x loaded-on x probe, compared with the reference release's load of the original
    checkpoint. A save that was not written fails its whole row of the grid, saying so."""
    order = sorted(runs, key=releases.version_key, reverse=True)
    saved_order = order[::-1]
    saves = [{**probe, "name": f"{probe['name']}.saved-on-{label}", "probe": probe["name"], "head_config": None,
              "saved_on": label, "original": probe["checkpoint"], "checkpoint": str(out / "saves" / label / file_name(probe["name"]))}
             for label in saved_order for probe in probes]
    written = {(row["release"], row["probe"]) for row in original if row["mode"] == PINNED and row["saved"]}
    loadable = [save for save in saves if (save["saved_on"], save["probe"]) in written]

    def load_saves(label: str) -> ReleaseRun:
        start = time.perf_counter()
        env = runs[label].env
        if isinstance(env, FailedEnvironment):
            results = _failed(saves, [PINNED], f"environment: {env.error}")
        else:
            answers = _one_per_probe(loadable, [PINNED], run_worker(env.python, loadable, out / "logits" / label / "across",
                                                                    atol, [PINNED], None, reload=False))
            by_name = {save["name"]: answer for save, answer in zip(loadable, answers, strict=True)}
            results = [by_name.get(save["name"]) or {"probe": save["name"], "ok": False,
                                                     "error": f"no save: the save on {save['saved_on']} failed"}
                       for save in saves]
        return ReleaseRun(label, Environment(python="", seconds=0.0, created=False), results,
                          time.perf_counter() - start)

    rows: List[Dict[str, Any]] = []

    def finished(run: ReleaseRun) -> None:
        loaded = []
        for saved_on in saved_order:
            group = [index for index, save in enumerate(saves) if save["saved_on"] == saved_on]
            part = ReleaseRun(run.label, run.env, [run.results[index] for index in group], run.seconds)
            loaded += _release_rows(part, [saves[index] for index in group], [PINNED], out, saved_on)
        _compare(loaded, references, out, atol)
        progress(_across_line(run.label, loaded, run.seconds))
        rows.extend(loaded)

    _concurrently(order, load_saves, jobs, finished)
    return sorted(rows, key=lambda row: (releases.version_key(row["saved_on"]), releases.version_key(row["loaded_on"])))


def _across_line(label: str, rows: List[Dict[str, Any]], seconds: float) -> str:
    counts: Dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    version = next((row["transformers"] for row in rows if row.get("ok")), label)
    what = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"transformers {version:<9} loads the saves of {len(rows)} release(s): {what}  ({seconds:.1f} s)"


def _asked(probes: List[Dict[str, Any]], modes: Sequence[str]) -> List[Tuple[Dict[str, Any], str]]:
    return [(probe, mode) for probe in probes for mode in modes]


def _failed(probes: List[Dict[str, Any]], modes: Sequence[str], error: str) -> List[Dict[str, Any]]:
    """A failed result for every probe and mode, saying why."""
    return [{"probe": probe["name"], "mode": mode, "ok": False, "error": error} for probe, mode in _asked(probes, modes)]


def _one_per_probe(probes: List[Dict[str, Any]], modes: Sequence[str],
                   results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The worker's results, one per probe and mode in the probes' order; when they are not (a worker of another
    archit, or one that stopped short), a failed result for every probe saying so, rather than rows dropped or given to
    the wrong probe."""
    asked = [(probe["name"], mode) for probe, mode in _asked(probes, modes)]
    answered = [(result.get("probe"), result.get("mode", PINNED)) for result in results]
    if answered == asked:
        return results
    return _failed(probes, modes, f"the worker answered for the probes {[name for name, _ in answered]}, not for "
                                  f"{[name for name, _ in asked]}")


def _progress_line(label: str, rows: List[Dict[str, Any]], env: Union[Environment, FailedEnvironment],
                   seconds: float, waiting: Sequence[str] = ()) -> str:
    version = next((row["transformers"] for row in rows if row.get("ok")), label)
    era = next((row["era"] for row in rows if row.get("era")), "–")
    state = "failed" if isinstance(env, FailedEnvironment) else "made" if env.created else "cached"
    timing = f"env {state} {env.seconds:.1f} s, {seconds:.1f} s in all"
    if len(rows) == 1:
        (row,) = rows
        status = "loads (compared once the reference ends)" if row["probe"] in waiting and row["ok"] else row["status"]
        what = (f"fails: {row['error']}" if row["status"] == "fails" else
                f"{status}, max |diff| {diff_text(row['max_abs_diff'])}, load {row['load_seconds']:.2f} s"
                + (f" ({row['error']})" if row["error"] else ""))
    else:
        counts: Dict[str, int] = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        what = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"transformers {version:<9} era {era:<5} {what}  ({timing})"


def resolve_releases(labels: Optional[Sequence[str]], everything: bool, pre: bool) -> List[str]:
    """The releases to run: the given ones (a minor such as ``4.57`` stands for the newest patch of it, looked up on
    the index when it answers), or with ``everything`` the newest patch of every minor from the floor on."""
    discovered, _ = releases.discover_releases(pre=pre)
    if everything:
        return list(discovered.values())
    return [discovered.get(label, label) if label.count(".") == 1 else label for label in labels or ()]


def check_probes(probes: List[Dict[str, Any]]) -> None:
    """Refuse bad arguments before building anything: a checkpoint that is not there, a class that is not one, a head
    config that is not a JSON object."""
    for probe in probes:
        if not Path(probe["checkpoint"]).exists():
            raise CommandError(f"'{probe['checkpoint']}' does not exist.")
        probe["checkpoint"] = str(Path(probe["checkpoint"]).resolve())
        if probe.get("transformers_class"):  # transformers' own class, looked up in each release
            continue
        task: Any = named_class(probe["task"], "task")
        named_class(probe["base"], "base")
        head_config = probe.get("head_config")
        if head_config is not None:
            if not isinstance(head_config, dict):
                raise CommandError(f"--head-config must be a JSON object, not {json.dumps(head_config)}.")
            try:
                task.headClass().configClass()(**head_config)
            except TypeError as error:
                raise CommandError(f"--head-config does not fit {task.__name__}'s head config: {error}.") from None


def read_probes(path: str, needs_classes: bool = True) -> List[Dict[str, Any]]:
    """The probes of a ``--probes`` file: a JSON list of ``{"name", "checkpoint", "base", "task"[, "head_config"][,
    "trust_remote_code"]}`` (relative checkpoints are relative to the file; ``base`` and ``task`` only when
    ``needs_classes``: not with ``--transformers-class``)."""
    try:
        probes = json.loads(Path(path).read_text())
        for probe in probes:
            probe["checkpoint"] = str(Path(path).parent / probe["checkpoint"])
            missing = ({"name", "base", "task"} if needs_classes else {"name"}) - probe.keys()
            if missing:
                raise CommandError(f"{path}: probe {probe} lacks {sorted(missing)}.")
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise CommandError(f"--probes {path}: {error}") from None
    return probes


def write_outputs(rows: List[Dict[str, Any]], out: Path, atol: float, title: str) -> None:
    """``matrix.json``, ``matrix.md`` and ``matrix.html`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        row["counts"] = {kind: len(row[kind]) for kind in ("initialised", "unused", "converted")}
    (out / "matrix.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "matrix.md").write_text(render_markdown(rows, atol, title))
    (out / "matrix.html").write_text(render_html(rows, atol, title))


def matrix_command(checkpoint: Optional[str], base: Optional[str], task: Optional[str], head_config: Optional[str],
                   transformers: Optional[Sequence[str]], everything: bool, pre: bool, reference: Optional[str],
                   atol: float, out: str, cache_dir: Optional[str], probes_file: Optional[str],
                   stream: TextIO, trust_remote_code: bool = False, name: Optional[str] = None,
                   modes: Optional[MatrixModes] = None) -> int:
    """The ``archit matrix`` command: exit code 0 when every release gives the reference's outputs, 1 otherwise.
    ``trust_remote_code``: a base model that ships its own code is built from it (in a probes file: per probe).
    ``modes``: what else to run (``MatrixModes``: ``--jobs``, ``--transformers-class``, ``--defaults``,
    ``--across-saves``)."""
    modes = modes or MatrixModes()
    if modes.transformers_class and (base or task or head_config):
        raise CommandError("--transformers-class loads with transformers' own class: --base, --task and --head-config "
                           "are archit's; give one or the other.")
    if probes_file:
        if checkpoint or base or task or head_config or trust_remote_code:
            raise CommandError("--probes replaces CHECKPOINT, --base, --task, --head-config and --trust-remote-code "
                               "(a probe's \"trust_remote_code\"); give one or the other.")
        probes = read_probes(probes_file, needs_classes=not modes.transformers_class)
    else:
        if not checkpoint:
            raise CommandError("archit matrix needs CHECKPOINT (or --probes FILE).")
        try:
            config = json.loads(head_config) if head_config is not None else None
        except ValueError as error:
            raise CommandError(f"--head-config is not JSON: {error}.") from None
        probes = [{"name": None, "checkpoint": checkpoint, "base": base, "task": task, "head_config": config,
                   "trust_remote_code": trust_remote_code}]
    if not transformers and not everything:
        raise CommandError("give the releases to run (--transformers 4.57 5.23) or --all.")
    if atol < 0:
        raise CommandError(f"--atol must be 0 or more, not {atol:g}.")
    for probe in probes if modes.transformers_class else ():
        probe["transformers_class"] = modes.transformers_class
    # Before any environment is made (guidance.py): names, releases, then the checkpoint as archit inspect reads it,
    # --base/--task defaulting to the classes it plans with (with transformers' own class, neither is needed).
    guidance.check_names(probes)
    guidance.check_releases([*(transformers or ()), *([reference] if reference else [])], pre)
    title = guidance.validate_checkpoints(probes, name, modes.transformers_class)
    check_probes(probes)
    labels = resolve_releases(transformers, everything, pre)
    if reference is not None:
        reference = resolve_releases([reference], False, pre)[0]
        labels = labels if reference in labels else [*labels, reference]
    labels = list(dict.fromkeys(labels))
    cache = Path(cache_dir) if cache_dir else releases.cache_dir() / "matrix"
    out_dir = Path(out)

    def progress(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    progress(f"{len(probes)} probe(s) on {len(labels)} transformers release(s), {modes.workers} at once; environments "
             f"in {cache}")
    rows = run_matrix(probes, labels, out_dir, cache, atol, reference, progress, modes)
    write_outputs(rows, out_dir, atol, f"archit matrix: {title}")
    stream.write("\n" + render_markdown(rows, atol, f"archit matrix: {title}") + "\n")
    stream.write(f"Wrote {out_dir / 'matrix.json'}, matrix.md, matrix.html\n")
    stream.write(summary_line(rows, atol) + "\n")
    return 0 if all(row["status"] == "same" for row in rows) else 1
