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
``package.module:Class`` of the user's own is importable."""
import hashlib
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Union

from safetensors.torch import load_file

from .. import __version__ as archit_version
from ..loading.commits import exclusive_lock
from . import guidance, releases
from .classes import CommandError, named_class
from .matrix_report import classify, diff_text, render_html, render_markdown, summary_line
from .matrix_worker import max_abs_diff

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


def run_worker(python: str, probes: List[Dict[str, Any]], out: Path, atol: float) -> List[Dict[str, Any]]:
    """Run ``archit.cli.matrix_worker`` in an environment; its result rows, or one failed row per probe carrying the
    worker's last error line when it could not run (archit not importable on that release, ...)."""
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "spec.json"
    spec.write_text(json.dumps({"out": str(out), "atol": atol, "probes": probes}))
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
    return _failed(probes, error)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "the worker exited without a message"


def _row_defaults(release: str, probe: Dict[str, Any]) -> Dict[str, Any]:
    return {"release": release, "transformers": None, "probe": probe["name"], "checkpoint": probe["checkpoint"],
            "base": probe["base"], "task": probe["task"], "ok": False, "status": None, "error": None, "era": None,
            "torch": None, "load_seconds": None, "max_abs_diff": None, "reload_max_abs_diff": None, "reference": None,
            "initialised": [], "unused": [], "converted": [], "logits_file": None}


def run_matrix(probes: List[Dict[str, Any]], release_labels: Sequence[str], out: Path, cache: Path, atol: float,
               reference: Optional[str] = None, progress: Callable[[str], None] = lambda line: None) \
        -> List[Dict[str, Any]]:
    """Every probe on every release: the rows of ``matrix.json`` (oldest release first). Releases run newest first
    (``reference`` first when given), so that each probe's reference logits are known when the next release finishes
    and every progress line can say same/differs."""
    order = sorted(release_labels, key=releases.version_key, reverse=True)
    if reference is not None:
        order = [reference] + [label for label in order if label != reference]
    references: Dict[str, Dict[str, Any]] = {}  # probe -> {"version", "logits"}
    rows: List[Dict[str, Any]] = []
    for label in order:
        start = time.perf_counter()
        env = build_environment(label, cache)
        if isinstance(env, FailedEnvironment):
            results = _failed(probes, f"environment: {env.error}")
        else:
            results = _one_per_probe(probes, run_worker(env.python, probes, out / "logits" / label, atol))
        release_rows = []
        for probe, result in zip(probes, results, strict=True):
            row = {**_row_defaults(label, probe), **result, "env_seconds": round(env.seconds, 2)}
            if row["ok"]:
                logits = load_file(str(out / "logits" / label / row["logits_file"]))
                row["logits_file"] = f"logits/{label}/{row['logits_file']}"
                if probe["name"] not in references and (reference is None or label == reference):
                    references[probe["name"]] = {"version": row["transformers"], "logits": logits}
                if probe["name"] in references:
                    row["reference"] = references[probe["name"]]["version"]
                    row["max_abs_diff"] = max_abs_diff(logits, references[probe["name"]]["logits"])
            row["status"] = classify(row, atol)
            if row["max_abs_diff"] == float("inf"):  # not a number JSON has
                row["max_abs_diff"], row["error"] = None, "the logits have other names or shapes than the reference's"
            release_rows.append(row)
        seconds = time.perf_counter() - start
        for row in release_rows:
            row["run_seconds"] = round(seconds - row["env_seconds"], 2)
        progress(_progress_line(label, release_rows, env, seconds))
        rows += release_rows
    return sorted(rows, key=lambda row: releases.version_key(row["release"]))


def _failed(probes: List[Dict[str, Any]], error: str) -> List[Dict[str, Any]]:
    """A failed result for every probe, saying why."""
    return [{"probe": probe["name"], "ok": False, "error": error} for probe in probes]


def _one_per_probe(probes: List[Dict[str, Any]], results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The worker's results, one per probe in the probes' order; when they are not (a worker of another archit, or one
    that stopped short), a failed result for every probe saying so, rather than rows dropped or given to the wrong
    probe."""
    asked, answered = [probe["name"] for probe in probes], [result.get("probe") for result in results]
    if answered == asked:
        return results
    return _failed(probes, f"the worker answered for the probes {answered}, not for {asked}")


def _progress_line(label: str, rows: List[Dict[str, Any]], env: Union[Environment, FailedEnvironment],
                   seconds: float) -> str:
    version = next((row["transformers"] for row in rows if row.get("transformers")), label)
    era = next((row["era"] for row in rows if row.get("era")), "–")
    state = "failed" if isinstance(env, FailedEnvironment) else "made" if env.created else "cached"
    timing = f"env {state} {env.seconds:.1f} s, {seconds:.1f} s in all"
    if len(rows) == 1:
        (row,) = rows
        what = (f"fails: {row['error']}" if row["status"] == "fails" else
                f"{row['status']}, max |diff| {diff_text(row['max_abs_diff'])}, load {row['load_seconds']:.2f} s"
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
        probe["checkpoint"] = str(Path(probe["checkpoint"]).resolve())


def read_probes(path: str) -> List[Dict[str, Any]]:
    """The probes of a ``--probes`` file: a JSON list of ``{"name", "checkpoint", "base", "task"[, "head_config"][,
    "trust_remote_code"]}`` (relative checkpoints are relative to the file)."""
    try:
        probes = json.loads(Path(path).read_text())
        for probe in probes:
            probe["checkpoint"] = str(Path(path).parent / probe["checkpoint"])
            missing = {"name", "base", "task"} - probe.keys()
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
                   stream: TextIO, trust_remote_code: bool = False, name: Optional[str] = None) -> int:
    """The ``archit matrix`` command: exit code 0 when every release gives the reference's outputs, 1 otherwise.
    ``trust_remote_code``: a base model that ships its own code is built from it (in a probes file: per probe)."""
    if probes_file:
        if checkpoint or base or task or head_config or trust_remote_code:
            raise CommandError("--probes replaces CHECKPOINT, --base, --task, --head-config and --trust-remote-code "
                               "(a probe's \"trust_remote_code\"); give one or the other.")
        probes = read_probes(probes_file)
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
    # Before any environment is made (guidance.py): names, releases, then the checkpoint as archit inspect reads it,
    # --base/--task defaulting to the classes it plans with. (With transformers' own class, neither is needed: pass it
    # as validate_checkpoints(..., transformers_class=...).)
    guidance.check_names(probes)
    guidance.check_releases([*(transformers or ()), *([reference] if reference else [])], pre)
    title = guidance.validate_checkpoints(probes, name)
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

    progress(f"{len(probes)} probe(s) on {len(labels)} transformers release(s); environments in {cache}")
    rows = run_matrix(probes, labels, out_dir, cache, atol, reference, progress)
    write_outputs(rows, out_dir, atol, f"archit matrix: {title}")
    stream.write("\n" + render_markdown(rows, atol, f"archit matrix: {title}") + "\n")
    stream.write(f"Wrote {out_dir / 'matrix.json'}, matrix.md, matrix.html\n")
    stream.write(summary_line(rows, atol) + "\n")
    return 0 if all(row["status"] == "same" for row in rows) else 1
