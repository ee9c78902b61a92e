"""What the ``archit`` command tells a user before it does any work: releases the package index does not have (with the
nearest ones it has), names that are no class, a damaged checkpoint (read once, as ``archit inspect`` reads it), the
``--base``/``--task`` a checkpoint implies, and the title a checkpoint goes by. ``archit matrix`` runs these checks
before it makes any environment; ``archit export`` gives the same example."""
import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from packaging.version import Version

from . import releases
from .classes import head_config_of, named_class, valid_names
from .inspection import inspect_checkpoint, planned_task
from .messages import CommandError, are, listing

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# Releases: refused before any environment is made when the package index does not have them.

def check_releases(labels: Sequence[str], pre: bool = False) -> None:
    """Refuse, with a ``CommandError`` naming the version and the nearest available ones, every label of ``labels``
    that no environment could be made for: not a version (``banana``), below archit's floor (``3.0``, ``4.30``), a
    minor the package index does not list (``4.99``), a minor with only pre-releases without ``pre``, a full version it
    does not list (``4.57.99``). The index is read as ``releases.discover_versions`` reads it (cached for an hour).

    Offline (the index unreachable, or ``ARCHIT_RELEASES_OFFLINE=1``) only the built-in list of minors is known: a minor
    within its span that it lacks is refused, but a minor newer than it (a release after the list was written) and
    every full version of a known minor cannot be proven absent; they are let through, with a warning, and the
    installer decides."""
    floor = releases.TRANSFORMERS_FLOOR
    for label in labels:
        version = releases.parsed_version(label)
        if version is None or len(version.release) < 2:
            raise CommandError(f"'{label}' is not a transformers version: give a minor (4.57, its newest patch) or a "
                               f"full version (4.57.3).")
        if version.release[:2] < releases.minor_key(floor):
            raise CommandError(f"transformers {label} is below archit's floor {floor}: archit runs on {floor} and "
                               f"later (--all runs every minor from {floor} on).")
    if not labels:
        return
    versions, _ = releases.discover_versions()
    if versions is None:
        _check_offline(labels, releases.TRANSFORMERS_MINORS)
        return
    known = [(parsed, text) for text in versions for parsed in [releases.parsed_version(text)]
             if parsed is not None and parsed.release[:2] >= releases.minor_key(floor)]
    for label in labels:
        version = Version(label)
        usable = sorted((parsed, text) for parsed, text in known
                        if pre or version.is_prerelease or not parsed.is_prerelease)
        if len(version.release) == 2:
            minors = sorted({parsed.release[:2] for parsed, _ in usable})
            if version.release[:2] in minors:
                continue
            pre_only = [text for parsed, text in known if parsed.release[:2] == version.release[:2]]
            if pre_only:
                raise CommandError(f"transformers {label} has only pre-releases on the package index "
                                   f"({listing(pre_only)}): pass --pre, or one of them.")
            nearest = _nearest(version.release[:2], minors)
            raise CommandError(f"transformers {label} is not on the package index; the nearest {are(nearest)} "
                               f"{listing(['%d.%d' % minor for minor in nearest])}.")
        if not any(parsed == version for parsed, _ in known):
            nearest = _nearest(version, [parsed for parsed, _ in usable])
            text = {parsed: name for parsed, name in usable}
            raise CommandError(f"transformers {label} is not on the package index; the nearest {are(nearest)} "
                               f"{listing([text[parsed] for parsed in nearest])}.")


def _check_offline(labels: Sequence[str], minors: Sequence[str]) -> None:
    keys = sorted(releases.minor_key(minor) for minor in minors)
    for label in labels:
        key = releases.minor_key(label)
        if key > keys[-1]:
            logger.warning("transformers %s is newer than archit's built-in list of releases, and the package index "
                           "cannot be reached to check it: the installer will try.", label)
        elif key not in keys:
            nearest = _nearest(key, keys)
            raise CommandError(f"transformers {label} is not a transformers release (archit's built-in list: the "
                               f"package index cannot be reached); the nearest {are(nearest)} "
                               f"{listing(['%d.%d' % minor for minor in nearest])}.")
        elif label.count(".") >= 2:
            logger.warning("The package index cannot be reached: transformers %s is not checked against it (only its "
                           "minor is known); the installer will try.", label)


def _nearest(wanted: Any, available: Sequence[Any]) -> List[Any]:
    """The newest of ``available`` below ``wanted`` and the oldest above it (one of them at the ends)."""
    below = [item for item in available if item < wanted]
    above = [item for item in available if item > wanted]
    return ([max(below)] if below else []) + ([min(above)] if above else [])


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints: validated once, and their classes inferred, before any environment is made.

EXAMPLE_TASK = "ForSingleLabelTokenClassification"
EXAMPLE_HEAD_CONFIG = '{"num_labels": 2}'
"""The example a message gives for a checkpoint with no head (a valid task and head config; a test runs them)."""


def check_names(probes: Sequence[Dict[str, Any]]) -> None:
    """Refuse what can be refused without reading a checkpoint: a checkpoint that is not there, a ``--base``/``--task``
    that names no class (with the valid names and the closest), a head config that does not fit the task named."""
    for probe in probes:
        if not Path(probe["checkpoint"]).exists():
            raise CommandError(f"'{probe['checkpoint']}' does not exist.")
        if probe.get("base"):
            named_class(probe["base"], "base")
        if probe.get("task"):
            task = named_class(probe["task"], "task")
            if probe.get("head_config") is not None:
                head_config_of(task, probe["head_config"])


def validate_checkpoints(probes: List[Dict[str, Any]], name: Optional[str] = None,
                         transformers_class: Optional[str] = None) -> str:
    """Read every probe's checkpoint as ``archit inspect`` does (``config.json`` a JSON object, every weight file's
    header readable: a damaged file is a ``CommandError`` naming it, exit 2, before any release is tried), fill in the
    base model class and task a probe leaves out with the ones ``inspect`` plans with (``transformers_class``: the
    checkpoint is loaded with transformers' own class, and needs neither), and answer the report's title: ``name``, else
    the single checkpoint's (``checkpoint_title``), else the number of probes. A single probe is named by the title."""
    for probe in probes:
        description = inspect_checkpoint(probe["checkpoint"])
        if description.kind == "archit-head":
            raise CommandError(f"'{probe['checkpoint']}' is a head saved by saveHead, not a checkpoint: add it to a "
                               f"model (ModelWithHeads.loadHead) and save that, or give the body's checkpoint with "
                               f"--task and --head-config.")
        if transformers_class is not None:
            continue
        if not probe.get("base"):
            probe["base"] = description.base_model_class
            logger.info("--base %s: the base model class archit inspect plans with.", probe["base"])
        if not probe.get("task"):
            task = planned_task(description)
            if task is None:
                raise CommandError(_task_needed(probe["checkpoint"], description))
            probe["task"] = task
            logger.info("--task %s: the task archit inspect plans with.", task)
    title = name or (probes[0].get("name") or checkpoint_title(probes[0]["checkpoint"]) if len(probes) == 1 else
                     f"{len(probes)} probes")
    if len(probes) == 1 and probes[0].get("name") is None:
        probes[0]["name"] = title
    return title


def _task_needed(checkpoint: str, description: Any) -> str:
    """Why a checkpoint's task cannot be inferred, and what to pass instead."""
    example = f"--task {EXAMPLE_TASK} --head-config '{EXAMPLE_HEAD_CONFIG}'"
    tasks = f"Tasks: {listing(valid_names('task'))}."
    if description.kind == "base":
        what = "is a base model (no head)"
    elif description.kind == "transformers-task":
        what = (f"is a transformers task model ({listing(description.architectures or [])}) whose head no archit task "
                f"computes")
    elif description.kind == "archit-published":
        return (f"'{checkpoint}' names no task (the published ArchIt wrote none): pass the task its head is for, e.g. "
                f"--task {EXAMPLE_TASK}. {tasks}")
    elif description.kind == "archit-multihead":
        return (f"'{checkpoint}' holds {len(description.heads or {})} heads ({listing(list(description.heads or {}))}); "
                f"archit matrix compares one task model: save one head as its task model "
                f"(ModelWithHeads.asTask(name).save_pretrained(folder)) and give that folder.")
    else:
        what = f"cannot be planned ({' '.join((description.plan_error or 'unknown kind').split())})"
    return (f"'{checkpoint}' {what}: archit matrix needs a task and a head config for a new head, e.g. {example}. "
            f"{tasks}")


_GENERIC = re.compile(r"^(models?|checkpoints?|ckpts?|final|best|last|latest|outputs?|out|saved?|exported?|hf|"
                      r"huggingface|weights|pretrained|snapshots?|main|runs?|results?|"
                      r"(checkpoint|ckpt|step|steps|global_step|epoch|iter|iteration)[-_]?\d+|\d+|[0-9a-f]{40})$",
                      re.IGNORECASE)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def checkpoint_title(checkpoint: str) -> str:
    """The name a checkpoint folder goes by in a report: a hub cache folder's ``org/name``
    (``models--org--name/snapshots/HASH``); else the folder's name, with as many parents as it takes to include one
    that is not generic (``/x/my-tagger/model``: ``my-tagger/model``; ``/runs/ner/checkpoint-500``: ``ner/checkpoint-500``;
    at most three parts); a folder with nothing but generic names takes ``config.json``'s ``_name_or_path`` where that is
    a hub id. ``_name_or_path`` does not come first: transformers 4.x writes the path a model was loaded from, so a
    fine-tune of ``roberta-base`` saved to ``my-tagger`` says ``roberta-base`` (5.x writes none)."""
    parts = [part for part in Path(checkpoint).resolve().parts if part not in ("/", "\\")]
    for part in parts:
        if part.startswith("models--") and len(part) > len("models--"):
            return part[len("models--"):].replace("--", "/")
    taken: List[str] = []
    for part in reversed(parts):
        taken.insert(0, part)
        if not _GENERIC.match(part) or len(taken) == 3:
            break
    if all(_GENERIC.match(part) for part in taken):
        stored = _name_or_path(checkpoint)
        if stored:
            return stored
    return "/".join(taken) or str(checkpoint)


def _name_or_path(checkpoint: str) -> Optional[str]:
    try:
        value = json.loads((Path(checkpoint) / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and _HUB_ID.match(value) and not Path(value).exists() else None
