"""Which transformers releases archit is tested on, and how an environment for one of them is installed: shared by the
noxfile (its sessions per minor) and ``archit matrix`` (its environments per release), so that both install the same
torch build and the same period-correct companions, and both learn of a new transformers minor from the package index.

This module imports nothing but the standard library and ``packaging`` (a dependency of nox itself, and of archit): the
noxfile loads it by file path, from nox's own Python, where archit (and torch) need not be installed.

- ``TRANSFORMERS_MINORS``: the built-in list of minors, used when the index cannot be reached.
- ``discover_releases()``: the newest patch of every minor from ``TRANSFORMERS_FLOOR`` on, read from the package index
  (``PIP_INDEX_URL`` / pip's ``index-url``, else PyPI's JSON API) with a short timeout and cached for an hour;
  ``discover_versions()``: every version it lists (``archit matrix`` refuses a version that is not among them).
- ``COMPANION_CAPS`` / ``companions(minor)``: what a minor needs capped besides its own metadata.
- ``PEFT_LINES`` / ``peft_requirement(minor)``: the peft release line the test sessions install with a minor.
- ``torch_requirement()`` and ``pip_find_links()``: the one torch build, found where pip is configured to find it.
- ``newest_installable(minors)`` / ``resolution_error(requirements)``: the newest minor the configured index can
  install (a new release may need a companion release the index does not carry yet), asked of uv and cached.
- ``version_key(label)``: the one order of versions and release labels (``archit matrix`` sorts its rows by it).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from packaging.version import InvalidVersion, Version

TRANSFORMERS_FLOOR = "4.36"
# Every minor with a release on PyPI when this list was last written: 4.36-4.57 and 5.0-5.24. Only the fallback for an
# unreachable index; discover_releases() finds newer minors by itself.
TRANSFORMERS_MINORS: Tuple[str, ...] = (*(f"4.{m}" for m in range(36, 58)), *(f"5.{m}" for m in range(0, 25)))

DEFAULT_TORCH = "torch==2.13.0"
TORCH_ENV = "ARCHIT_TORCH"

# Period-correct companions.
# transformers' own metadata already keeps huggingface_hub and tokenizers on the lines each minor was built for (hub
# >=0.19,<1.0 on 4.x and >=1.0 on 5.x; one tokenizers 0.x range per minor), and safetensors has kept its API. What that
# metadata leaves open, and what later changed under it, is capped here. Each cap is the companion line that was current
# when the minor came out (checked by resolving as of each minor's release day with `uv pip install --exclude-newer
# DATE`):
#   - accelerate 1.0 (Oct 2024) removed `Accelerator(dispatch_batches=...)`, which the Trainer of 4.36-4.39 still
#     passes; 4.40 and later work with accelerate 1.x.
#   - numpy 2.0 (Jun 2024): transformers supports it from 4.43 on (4.42 pins numpy<2 itself).
# Why a table rather than resolving everything with `--exclude-newer DATE`: torch 2.13 and its own dependencies
# (typing-extensions, sympy, ...) are newer than every old cutoff and would each need an exemption, archit's floor
# accelerate>=0.26 rules out 4.36's release-day accelerate (0.25), and files without an upload time (find-links, many
# mirrors) silently escape the cutoff.
COMPANION_CAPS: Tuple[Tuple[str, str, Tuple[str, ...]], ...] = (
    # first, last minor, extra requirements
    ("4.36", "4.39", ("accelerate<1.0", "numpy<2")),
    ("4.40", "4.42", ("numpy<2",)),
)

# The peft the test sessions install (tests/test_peft.py: peft's task types on archit's models), per first minor: each
# minor gets the line of the newest entry whose first minor is not newer than it. peft declares no transformers floor in
# its metadata, but imports at its top what it uses: peft 0.14 and later import transformers' EncoderDecoderCache, new
# in 4.43 (checked on this index: peft 0.14.0 to 0.21.2 fail to import on 4.36-4.42, 0.21.2 imports on 4.43), so
# 4.36-4.42 get peft 0.13.2, the last release before; 4.43 and later the newest. Test sessions only: `archit matrix`
# environments do not need peft.
PEFT_LINES: Tuple[Tuple[str, str], ...] = (
    # first minor, requirement
    ("4.36", "peft>=0.13.2,<0.14"),
    ("4.43", "peft>=0.14"),
)

PYPI_JSON_URL = "https://pypi.org/pypi/transformers/json"
INDEX_TIMEOUT_S = 3.0
CACHE_SECONDS = 3600
CACHE_DIR_ENV = "ARCHIT_CACHE_DIR"
NO_INDEX_ENV = "ARCHIT_RELEASES_OFFLINE"  # set to 1: never ask the index, use TRANSFORMERS_MINORS


def minor_key(version: str) -> Tuple[int, int]:
    """``"4.57"`` or ``"4.57.3"`` -> ``(4, 57)``."""
    major, minor = version.split(".")[:2]
    digits = re.match(r"\d+", minor)
    if digits is None:
        raise ValueError(f"{version!r} is not a version: its minor {minor!r} does not start with a number")
    return int(major), int(digits.group())


def minor_of(version: str) -> str:
    """``"4.57.3"`` -> ``"4.57"``."""
    return "%d.%d" % minor_key(version)


def companions(minor: str) -> List[str]:
    """The extra requirements (caps) that one transformers minor (``"4.38"`` or a full version) is installed with."""
    return [
        requirement
        for first, last, requirements in COMPANION_CAPS
        if minor_key(first) <= minor_key(minor) <= minor_key(last)
        for requirement in requirements
    ]


def peft_requirement(minor: str) -> str:
    """The peft requirement the test sessions install with one transformers minor (``"4.38"`` or a full version): see
    ``PEFT_LINES``."""
    lines = [requirement for first, requirement in sorted(PEFT_LINES, key=lambda line: minor_key(line[0]))
             if minor_key(first) <= minor_key(minor)]
    if not lines:
        raise ValueError(f"No peft line for transformers {minor}: PEFT_LINES starts at {PEFT_LINES[0][0]}.")
    return lines[-1]


def torch_requirement() -> str:
    """The one torch build every environment gets: ``ARCHIT_TORCH`` (e.g. ``"torch==2.5.1"``), else ``DEFAULT_TORCH``."""
    return os.environ.get(TORCH_ENV, DEFAULT_TORCH)


def _pip_config(keys: Sequence[str], python: str = sys.executable) -> str:
    """The first of pip's configuration ``keys`` (``global.find-links``, ...) that is set, or ``""``."""
    for key in keys:
        try:
            done = subprocess.run([python, "-m", "pip", "config", "get", key], capture_output=True, text=True,
                                  timeout=60)
        except (OSError, subprocess.SubprocessError):
            break
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return ""


def pip_find_links() -> List[str]:
    """The find-links locations pip is configured with (``PIP_FIND_LINKS``, then pip's config files), or none. uv does
    not read pip's configuration, so these are passed to it: where a local CPU torch wheel lies (``/opt/wheels`` on
    the dev and CI machines) it wins over the registry's CUDA build."""
    value = os.environ.get("PIP_FIND_LINKS", "") or _pip_config(("global.find-links", "install.find-links"))
    return value.split()


def find_links_args() -> List[str]:
    """``pip_find_links()`` as installer arguments: ``["--find-links", LOCATION, ...]``."""
    return [arg for location in pip_find_links() for arg in ("--find-links", location)]


def index_url() -> Optional[str]:
    """The simple index pip is configured with (``PIP_INDEX_URL``, then pip's ``index-url``), or ``None`` (PyPI)."""
    return os.environ.get("PIP_INDEX_URL") or _pip_config(("global.index-url", "install.index-url")) or None


# ---------------------------------------------------------------------------------------------------------------------
# Versions

def parsed_version(text: str) -> Optional[Version]:
    """``packaging``'s ``Version`` of ``text``, or ``None`` when it is no PEP 440 version."""
    try:
        return Version(text)
    except InvalidVersion:
        return None


def version_key(label: str) -> Tuple[int, Any]:
    """The one order of transformers versions and release labels: PEP 440's (``4.9`` before ``4.36``, ``5.0.0rc1``
    before ``5.0.0``, a minor such as ``4.57`` with its ``.0`` patch); a label that is no version sorts before every
    version, by its text."""
    version = parsed_version(label)
    return (0, label) if version is None else (1, version)


def newest_per_minor(versions: Sequence[str], pre: bool = False, floor: str = TRANSFORMERS_FLOOR) -> Dict[str, str]:
    """The newest version of each minor from ``floor`` on, keyed by minor in ascending order (``{"4.36": "4.36.2",
    ...}``); pre-releases only with ``pre`` (a minor with only pre-releases then enters too)."""
    best: Dict[str, tuple] = {}
    for version in versions:
        key = parsed_version(version)
        if key is None or (key.is_prerelease and not pre):
            continue
        minor = minor_of(version)
        if minor_key(minor) < minor_key(floor):
            continue
        if minor not in best or key > best[minor][0]:
            best[minor] = (key, version)
    return {minor: best[minor][1] for minor in sorted(best, key=minor_key)}


def versions_from_pypi_json(document: dict) -> List[str]:
    """The versions of PyPI's JSON API answer (``/pypi/NAME/json``) that have at least one file not yanked."""
    return [version for version, files in document.get("releases", {}).items()
            if files and not all(file.get("yanked", False) for file in files)]


_SDIST_OR_WHEEL = re.compile(r"^transformers-([^-]+?)(?:-py\d.*\.whl|\.tar\.gz|\.zip)$", re.IGNORECASE)


def versions_from_simple(body: str, content_type: str) -> List[str]:
    """The versions of a simple-index project page: PEP 691's JSON (``versions``, else from the file names) or the
    HTML page's links (yanked files, ``data-yanked``, skipped)."""
    if "json" in content_type:
        document = json.loads(body)
        if document.get("versions"):
            return list(document["versions"])
        names = [file["filename"] for file in document.get("files", []) if not file.get("yanked")]
    else:
        names = [name for attributes, name in re.findall(r"<a([^>]*)>([^<]+)</a>", body) if "data-yanked" not in attributes]
    return sorted({match.group(1) for name in names for match in [_SDIST_OR_WHEEL.match(name.strip())] if match})


# ---------------------------------------------------------------------------------------------------------------------
# Discovery


def cache_dir() -> Path:
    """archit's cache folder: ``ARCHIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/archit`` (``~/.cache/archit``)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "archit"


def _fetch(url: str, accept: str, timeout: float) -> Tuple[str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "archit-release-discovery"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read().decode("utf-8"), response.headers.get("Content-Type", "")


def fetch_versions(index: Optional[str] = None, timeout: float = INDEX_TIMEOUT_S,
                   fetch: Callable[[str, str, float], Tuple[str, str]] = _fetch) -> List[str]:
    """Every transformers version the index lists: PyPI's JSON API when ``index`` is ``None``, else the simple API
    page ``INDEX/transformers/``. Raises ``OSError``/``ValueError`` when it cannot be read."""
    if index is None:
        body, _ = fetch(PYPI_JSON_URL, "application/json", timeout)
        return versions_from_pypi_json(json.loads(body))
    accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    body, content_type = fetch(index.rstrip("/") + "/transformers/", accept, timeout)
    return versions_from_simple(body, content_type)


def discover_releases(pre: bool = False, timeout: float = INDEX_TIMEOUT_S, cache: Optional[Path] = None,
                      fetch: Callable[[str, str, float], Tuple[str, str]] = _fetch,
                      index: Optional[str] = "configured") -> Tuple[Dict[str, str], str]:
    """The newest patch of each transformers minor from ``TRANSFORMERS_FLOOR`` on, ``{minor: version}``, and where it
    comes from (``"index URL"``, ``"cache"`` or ``"built-in list"``). The index is asked at most once an hour (the
    answer is cached in ``cache``, default ``cache_dir()/releases.json``); when it cannot be reached (or
    ``ARCHIT_RELEASES_OFFLINE=1``), the built-in ``TRANSFORMERS_MINORS`` stand, each as its minor (``{"4.36": "4.36"}``:
    install the newest patch of it)."""
    versions, source = discover_versions(timeout, cache, fetch, index)
    if versions is None:
        return {minor: minor for minor in TRANSFORMERS_MINORS}, source
    return newest_per_minor(versions, pre=pre), source


def discover_versions(timeout: float = INDEX_TIMEOUT_S, cache: Optional[Path] = None,
                      fetch: Callable[[str, str, float], Tuple[str, str]] = _fetch,
                      index: Optional[str] = "configured") -> Tuple[Optional[List[str]], str]:
    """Every transformers version the index lists (pre-releases too; below the floor too), and where the list comes
    from, as ``discover_releases`` reads and caches it; ``(None, "built-in list")`` when the index cannot be reached
    (or ``ARCHIT_RELEASES_OFFLINE=1``): then only the built-in ``TRANSFORMERS_MINORS`` are known, not their patches."""
    if os.environ.get(NO_INDEX_ENV, "") not in ("", "0"):
        return None, "built-in list"
    if index == "configured":
        index = None if os.environ.get("PIP_INDEX_URL") is None and not _configured_index_cheaply() else index_url()
    source = index or PYPI_JSON_URL
    cache = cache if cache is not None else cache_dir() / "releases.json"
    try:
        stored = json.loads(cache.read_text())
        if stored["source"] == source and time.time() - stored["time"] < CACHE_SECONDS:
            return list(stored["versions"]), "cache"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        versions = fetch_versions(index, timeout, fetch)
    except (OSError, ValueError, KeyError, TypeError):  # URLError and timeouts are OSErrors.
        return None, "built-in list"
    if not versions:
        return None, "built-in list"
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"source": source, "time": time.time(), "versions": versions}))
    except OSError:
        pass
    return versions, source


def _configured_index_cheaply() -> bool:
    """Whether one of pip's config files names an ``index-url`` (read as text, without starting pip: ``nox -l`` must
    stay fast)."""
    names = [os.environ.get("PIP_CONFIG_FILE", ""), "/etc/pip.conf", "/etc/xdg/pip/pip.conf",
             str(Path.home() / ".pip" / "pip.conf"), str(Path.home() / ".config" / "pip" / "pip.conf"),
             os.path.join(sys.prefix, "pip.conf")]
    for name in names:
        try:
            if name and re.search(r"^\s*index-url\s*=", Path(name).read_text(), re.MULTILINE):
                return True
        except OSError:
            continue
    return False


def transformers_requirement(release: str) -> str:
    """The requirement for a release: ``transformers==4.57.3`` for a full version, ``transformers~=4.57.0`` (its newest
    patch) for a minor."""
    return f"transformers=={release}" if release.count(".") >= 2 else f"transformers~={release}.0"


# ---------------------------------------------------------------------------------------------------------------------
# Installability

RESOLVE_CACHE_SECONDS = 6 * 3600
RESOLVE_TIMEOUT_S = 120.0
_NO_SOLUTION = "No solution found"


def uv_command() -> Optional[List[str]]:
    """How to run uv from this Python: ``uv`` on the PATH, else ``python -m uv``; ``None`` without uv."""
    found = shutil.which("uv")
    if found:
        return [found]
    try:
        subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return [sys.executable, "-m", "uv"]


def resolution_error(requirements: Sequence[str], cache: Optional[Path] = None,
                     run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> Optional[str]:
    """Why ``requirements`` cannot be installed from the configured package index (uv's telling line: ``Because only
    kernels<=0.17.2 is available and transformers>=5.25.0 depends on kernels>=0.19.1 ...``), or ``None`` when uv
    resolves them. A new transformers release can depend on a release of a companion that the index does not carry
    yet; its sessions then cannot run here. Only a resolution that uv answers with "No solution found" counts: without
    uv, offline, or on any other failure the answer is ``None`` (try to install, and fail there if it must). The answer
    is cached for six hours (``cache``, default ``cache_dir()/resolutions.json``)."""
    key = " ".join(sorted(requirements))
    cache = cache if cache is not None else cache_dir() / "resolutions.json"
    try:
        stored = json.loads(cache.read_text())
    except (OSError, ValueError):
        stored = {}
    entry = stored.get(key) if isinstance(stored, dict) else None
    if isinstance(entry, dict) and time.time() - entry.get("time", 0) < RESOLVE_CACHE_SECONDS:
        return entry.get("error")
    uv = uv_command()
    if uv is None:
        return None
    try:
        done = run([*uv, "pip", "compile", "--quiet", "--no-header", "--python", sys.executable, "-"],
                   input="\n".join(requirements), capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    error = None
    if done.returncode != 0 and _NO_SOLUTION in done.stderr:
        lines = [line.strip(" ×╰─▶│\t") for line in done.stderr.splitlines()]
        error = next((re.sub(r"^cause:\s*", "", line) for line in lines if "Because" in line), _NO_SOLUTION)
    elif done.returncode != 0:
        return None  # Not a verdict on the requirements (the index unreachable, ...): not cached.
    try:
        stored = stored if isinstance(stored, dict) else {}
        stored[key] = {"time": time.time(), "error": error}
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(stored, indent=1))
    except OSError:
        pass
    return error


def minor_requirements(minor: str) -> List[str]:
    """What a session or environment for ``minor`` resolves besides torch and archit: transformers and its caps."""
    return [transformers_requirement(minor), *companions(minor)]


def newest_installable(minors: Sequence[str],
                       error: Callable[[Sequence[str]], Optional[str]] = resolution_error) -> Tuple[str, Dict[str, str]]:
    """The newest of ``minors`` whose requirements resolve on the configured index, and why each newer one does not
    (``{minor: reason}``)."""
    skipped: Dict[str, str] = {}
    for minor in sorted(minors, key=minor_key, reverse=True):
        reason = error(minor_requirements(minor))
        if reason is None:
            return minor, skipped
        skipped[minor] = reason
    return sorted(minors, key=minor_key)[-1], skipped
