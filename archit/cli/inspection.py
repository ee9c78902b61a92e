"""``archit inspect CHECKPOINT``: what a checkpoint folder is and what ``from_pretrained`` would do with it, from
``config.json`` and the weight files' headers; no tensor is read, so it takes as long on a large checkpoint as on a small
one (the model is built on the meta device)."""
import dataclasses
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type

from ..instantiation.multihead import ModelWithHeads, task_of
from ..loading import LoadPlan, plan_base_loading, plan_heads_loading, plan_loading
from ..loading.checkpointcode import code_auto_map, code_files
from ..loading.commits import open_settled, read_consistently, resolve_local
from ..loading.configs import base_config_from_dict
from ..loading.files import (
    CONFIG_NAME,
    HEAD_CONFIG_NAME,
    HEAD_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    WEIGHTS_INDEX_NAME,
    TensorHeader,
    checkpoint_name,
    find_weight_files,
    is_safetensors,
    read_config_dict,
    read_json_file,
    read_tensor_headers,
)
from ..loading.hfmodels import transformers_head_config
from ..loading.planning import Mismatch, listing_of
from .classes import (
    CommandError,
    fitting_base_class,
    is_task_architecture,
    task_head,
    transformers_head,
    transformers_task,
)

KINDS = {
    "base": "base model",
    "transformers-task": "transformers task model",
    "archit": "archit checkpoint",
    "archit-published": "archit checkpoint in the published ArchIt's format (it names no task)",
    "archit-multihead": "archit checkpoint with several heads (ModelWithHeads)",
    "archit-head": "head saved by saveHead (without its body)",
}
"""The kinds of checkpoint ``inspect`` tells apart (its ``kind`` field), in words."""

# Errors that say the checkpoint cannot be planned for (the rest of the description still stands).
_PLANNING_ERRORS = (OSError, ValueError, TypeError, KeyError, ImportError, NotImplementedError)


@dataclass(frozen=True)
class CustomCode:
    """The code a checkpoint ships: the files its ``auto_map`` names, and the ``auto_map`` itself."""
    files: Tuple[str, ...]
    auto_map: Dict[str, Any]


@dataclass(frozen=True)
class WeightFile:
    """One weight file: its name in the checkpoint and its size."""
    name: str
    bytes: int


@dataclass(frozen=True)
class WeightFiles:
    """A checkpoint's weight files: ``format`` ``"safetensors"`` or ``"bin"``; ``index``, the index file when sharded;
    ``bytes``, their sizes together."""
    format: str
    sharded: bool
    index: Optional[str]
    weights: Tuple[WeightFile, ...]
    bytes: int


@dataclass(frozen=True)
class StoredHead:
    """One head of a checkpoint with several heads, as its ``config.json`` stores it: its task's name, what the task
    does in words (``None`` for a task that cannot be imported), its head config, whether it is tied."""
    task: Optional[str]
    head: Optional[str]
    head_config: Dict[str, Any]
    tied: bool


@dataclass(frozen=True)
class CheckpointDescription:
    """What ``archit inspect`` says of a checkpoint: what it is (``kind``, one of ``KINDS``; ``None`` when planning
    failed before telling), what it holds, and the plan ``from_pretrained`` would execute (``planned``, the call; the
    tensors it would load, initialise, leave unused, have converted or find mismatched; ``plan_error``, why it cannot
    load). ``to_dict()`` is what ``--json`` prints, keys in this order; ``render`` gives the text lines."""
    checkpoint: str
    kind: Optional[str]
    archit_version: Optional[str]
    model_type: Optional[str]
    architectures: Optional[List[str]]
    custom_code: Optional[CustomCode]
    task: Optional[str]
    head: Optional[str]
    head_config: Optional[Dict[str, Any]]
    tied: Optional[bool]
    heads: Optional[Dict[str, StoredHead]]
    key_prefix: Optional[str]
    files: WeightFiles
    parameters: int
    dtypes: Dict[str, int]
    base_model_class: str
    planned: Optional[str] = None
    note: Optional[str] = None
    would_load: Optional[Tuple[str, ...]] = None
    would_initialise: Optional[Tuple[str, ...]] = None
    unused: Optional[Tuple[str, ...]] = None
    converted: Optional[Dict[str, Tuple[str, ...]]] = None
    mismatched: Optional[Tuple[Mismatch, ...]] = None
    plan_error: Optional[str] = None
    reads_tensor_data: Optional[bool] = None
    """Whether ``from_pretrained`` would read tensor data in this process: ``False`` under FSDP's RAM-efficient loading
    on a rank other than local rank 0 (it receives rank 0's tensors from accelerate's FSDP preparation)."""

    def to_dict(self) -> Dict[str, Any]:
        """The description as plain JSON values (what ``archit inspect --json`` prints; keys in the README)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def inspect_checkpoint(checkpoint: str) -> CheckpointDescription:
    """What ``archit inspect`` says of ``checkpoint``. Raises ``CommandError`` when the folder, its ``config.json`` or a
    weight file's header cannot be read. A save into the folder meanwhile is waited out as by ``from_pretrained``
    (``read_consistently``): the description is of one checkpoint."""
    _check_folder(checkpoint)
    if resolve_local(str(checkpoint), CONFIG_NAME) is None and resolve_local(str(checkpoint), HEAD_CONFIG_NAME):
        return read_consistently(str(checkpoint), lambda: _describe_head(checkpoint))
    return read_consistently(str(checkpoint), lambda: _describe(checkpoint))


def planned_task(description: CheckpointDescription) -> Optional[str]:
    """The task ``from_pretrained`` was planned with (``archit matrix`` and ``archit export`` default to it): an archit
    checkpoint's own, a transformers task model's archit equivalent where archit has a head computing the same (its
    head config is then known); ``None`` for a base model, a head archit does not have, several heads, or none named."""
    if description.kind == "archit":
        return description.task
    if description.kind == "transformers-task" and description.head_config is not None and description.planned:
        return description.planned.split(".from_pretrained(", 1)[0]  # As _plan writes it.
    return None


def _describe(checkpoint: str) -> CheckpointDescription:
    config_dict, weight_files, headers = _read(checkpoint)
    is_archit = "base_model_config" in config_dict
    base_dict = config_dict["base_model_config"] if is_archit else config_dict
    if not isinstance(base_dict, dict):
        raise CommandError(f"{Path(checkpoint) / 'config.json'}: base_model_config is not a JSON object.")
    model_type = base_dict.get("model_type")
    base_class = fitting_base_class(model_type)
    description = CheckpointDescription(
        checkpoint=str(checkpoint), kind=None, archit_version=config_dict.get("archit_version"), model_type=model_type,
        architectures=config_dict.get("architectures") or base_dict.get("architectures"),
        custom_code=_custom_code(base_dict), task=None, head=None, head_config=None, tied=None, heads=None,
        key_prefix=None if is_archit else _key_prefix(base_class, base_dict, headers),
        files=_files(checkpoint, weight_files), parameters=sum(h.numel for h in headers.values()),
        dtypes=_dtypes(headers), base_model_class=base_class.__name__)
    if is_archit:
        return _describe_archit(description, config_dict, checkpoint, base_class)
    return _describe_transformers(description, config_dict, checkpoint, base_class)


def _describe_head(checkpoint: str) -> CheckpointDescription:
    """A folder written by ``ModelWithHeads.saveHead``: ``head_config.json`` (task, head config, the body it fits) and
    ``head.safetensors`` (the head's own tensors), read as ``loadHead`` reads them, headers only."""
    folder = Path(checkpoint)
    try:
        spec = read_json_file(str(folder / HEAD_CONFIG_NAME))
        if not isinstance(spec, dict):
            raise ValueError(f"{folder / HEAD_CONFIG_NAME} is not a JSON object.")
        weights = resolve_local(str(folder), HEAD_WEIGHTS_NAME)
        if weights is None:
            raise OSError(f"{folder / HEAD_WEIGHTS_NAME} is missing (saveHead writes it next to {HEAD_CONFIG_NAME}).")
        headers = read_tensor_headers([weights])
    except (OSError, ValueError, KeyError) as error:
        raise CommandError(str(error)) from error
    body: Dict[str, Any] = spec["body"] if isinstance(spec.get("body"), dict) else {}
    model_type = body.get("model_type")
    stored = _stored_head(spec)
    size = open_settled(weights, os.path.getsize)
    order = ["model_type", "hidden_size", "vocab_size"]
    fits = ", ".join(f"{key.replace('_', ' ')} {body[key]}" for key in sorted(body, key=lambda k: (k not in order,
                                                                                                     order.index(k) if k in order else 0, k)))
    return CheckpointDescription(
        checkpoint=str(checkpoint), kind="archit-head", archit_version=spec.get("archit_version"),
        model_type=model_type, architectures=None, custom_code=None, task=stored.task, head=stored.head,
        head_config=stored.head_config, tied=bool(spec.get("tied_to_input_embeddings", False)), heads=None,
        key_prefix=None, files=WeightFiles(format="safetensors", sharded=False, index=None,
                                           weights=(WeightFile(name=HEAD_WEIGHTS_NAME, bytes=size),), bytes=size),
        parameters=sum(h.numel for h in headers.values()), dtypes=_dtypes(headers),
        base_model_class=fitting_base_class(model_type).__name__,
        planned=f"ModelWithHeads.loadHead(FOLDER, name={spec.get('name')!r})",
        note=f"Fits a body with {fits or 'any model type'}"
             + (f"; saved with transformers {spec['transformers_version']}" if spec.get("transformers_version") else "")
             + (". The output matrix is the body's input embeddings: not stored." if spec.get("tied_to_input_embeddings")
                else "."),
        would_load=tuple(sorted(headers)), would_initialise=(), unused=(), converted={}, mismatched=())


def _check_folder(checkpoint: str) -> None:
    folder = Path(checkpoint)
    if not folder.exists():
        raise CommandError(f"'{checkpoint}' does not exist.")
    if not folder.is_dir():
        raise CommandError(f"'{checkpoint}' is a file; inspect reads a checkpoint folder (config.json and the weight "
                           f"files).")


def _read(checkpoint: str) -> Tuple[Dict[str, Any], List[str], Dict[str, TensorHeader]]:
    folder = Path(checkpoint)
    try:
        config_dict = read_config_dict(checkpoint)
        if not isinstance(config_dict, dict):
            raise ValueError(f"{folder / 'config.json'} is not a JSON object.")
        weight_files = find_weight_files(checkpoint)
        return config_dict, weight_files, read_tensor_headers(weight_files)
    except (OSError, ValueError, KeyError) as error:
        raise CommandError(str(error)) from error


def _describe_archit(description: CheckpointDescription, config_dict: Dict[str, Any], checkpoint: str,
                     base_class: Type[Any]) -> CheckpointDescription:
    """The description of an archit checkpoint, as far as it gets: a planning error leaves what was told before it."""
    d = replace(description, head_config=config_dict.get("head_config"))
    try:
        if "heads" in config_dict:
            d = replace(d, kind="archit-multihead")
            d = replace(d, heads={name: _stored_head(spec) for name, spec in config_dict["heads"].items()})
            return _plan(d, "ModelWithHeads", base_class,
                         lambda: plan_heads_loading(ModelWithHeads, checkpoint, base_class))
        if config_dict.get("task"):
            d = replace(d, kind="archit", task=config_dict["task"])
            task = task_of(config_dict["task"])
            d = replace(d, head=task_head(task))
            return _plan(d, task.__name__, base_class, lambda: plan_loading(task, checkpoint, base_class))
        d = replace(d, kind="archit" if "archit_version" in config_dict else "archit-published",
                    note="It names no task: planned as the base model, so its head's tensors count as unused; "
                         "TASK.from_pretrained loads them.")
        return _plan(d, base_class.__name__, None, lambda: plan_base_loading(base_class, checkpoint))
    except _PLANNING_ERRORS as error:
        return replace(d, plan_error=str(error))


def _describe_transformers(description: CheckpointDescription, config_dict: Dict[str, Any], checkpoint: str,
                           base_class: Type[Any]) -> CheckpointDescription:
    """The description of a transformers checkpoint (a base model or a task model), as far as it gets."""
    d = description
    try:
        architectures = d.architectures or []
        if not any(is_task_architecture(name, base_class) for name in architectures):
            d = replace(d, kind="base", note="Planned as the base model alone; a task loaded from it "
                                             "(TASK.from_pretrained with a head config) adds a new head.")
            return _plan(d, base_class.__name__, None, lambda: plan_base_loading(base_class, checkpoint))
        d = replace(d, kind="transformers-task")
        d = replace(d, head=transformers_head(base_class, config_dict))
        task = transformers_task(base_class, config_dict)
        head_config = transformers_head_config(task, base_class, config_dict) if task is not None else None
        if task is None or head_config is None:
            d = replace(d, note=f"archit has no head computing what the head of {', '.join(architectures)} computes "
                                f"on model type '{d.model_type}': planned as a base model, so the head's tensors count "
                                f"as unused.")
            return _plan(d, base_class.__name__, None, lambda: plan_base_loading(base_class, checkpoint))
        d = replace(d, head_config=_as_dict(head_config),
                    note=f"{task.__name__} imports its head (with the head config above, when given none).")
        return _plan(d, task.__name__, base_class, lambda: plan_loading(task, checkpoint, base_class))
    except _PLANNING_ERRORS as error:
        return replace(d, plan_error=str(error))


def _plan(description: CheckpointDescription, class_name: str, base_class: Optional[Type[Any]],
          plan: Callable[[], LoadPlan]) -> CheckpointDescription:
    """The description with the ``LoadPlan`` that ``from_pretrained`` would execute (or why there is none)."""
    arguments = "CHECKPOINT" + (f", {base_class.__name__}" if base_class is not None else "")
    d = replace(description, planned=f"{class_name}.from_pretrained({arguments})")
    try:
        answer = plan()
    except _PLANNING_ERRORS as error:
        return replace(d, plan_error=str(error))
    if base_class is not None and class_name != ModelWithHeads.__name__:  # A model with one head: tying is planned.
        d = replace(d, tied=answer.tied)
    return replace(d, would_load=tuple(sorted(answer.loaded)), would_initialise=tuple(sorted(answer.missing)),
                   unused=tuple(sorted(answer.unexpected)), converted={key: tuple(keys) for key, keys in sorted(answer.converted.items())},
                   mismatched=tuple((key, tuple(stored), tuple(model)) for key, stored, model in answer.mismatched),
                   plan_error=answer.error, reads_tensor_data=answer.reads_tensor_data)


def _custom_code(base_dict: Dict[str, Any]) -> Optional[CustomCode]:
    """The code the checkpoint ships (its ``auto_map`` and the files it names), read from ``config.json`` alone: none of
    it is imported, so planning a load that needs it fails with the reason (``trust_remote_code=True``)."""
    auto_map = code_auto_map(base_dict)
    return CustomCode(files=tuple(code_files(base_dict)), auto_map=auto_map) if auto_map else None


def _stored_head(spec: Any) -> StoredHead:
    spec = spec if isinstance(spec, dict) else {}
    head_config = spec.get("head_config") or {}
    try:
        head = task_head(task_of(spec.get("task", "")))
    except ValueError:
        head = None
    return StoredHead(task=spec.get("task"), head=head, head_config=head_config,
                      tied=bool(head_config.get("tie_weights", False)))


def _key_prefix(base_class: Type[Any], base_dict: Dict[str, Any], headers: Dict[str, TensorHeader]) -> Optional[str]:
    """The architecture prefix (``roberta.``) when the checkpoint's keys carry it, as task models' keys do."""
    try:
        config = base_config_from_dict(base_dict, base_class.configClass())
        core_class = base_class.coreClassFor(config) if hasattr(base_class, "coreClassFor") else base_class.coreClass()
    except (ValueError, TypeError, ImportError):
        return None
    prefix = f"{core_class.base_model_prefix}." if core_class.base_model_prefix else None
    return prefix if prefix and any(key.startswith(prefix) for key in headers) else None


def _files(checkpoint: str, weight_files: List[str]) -> WeightFiles:
    folder = Path(checkpoint)
    safetensors = is_safetensors(weight_files[0])
    index_name = SAFE_WEIGHTS_INDEX_NAME if safetensors else WEIGHTS_INDEX_NAME
    index = index_name if resolve_local(str(folder), index_name) is not None else None
    weights = tuple(WeightFile(name=checkpoint_name(path), bytes=open_settled(path, os.path.getsize))
                    for path in weight_files)
    return WeightFiles(format="safetensors" if safetensors else "bin", sharded=index is not None, index=index,
                       weights=weights, bytes=sum(weight.bytes for weight in weights))


def _dtypes(headers: Dict[str, TensorHeader]) -> Dict[str, int]:
    """Parameters per dtype, most first."""
    counts: Dict[str, int] = {}
    for header in headers.values():
        counts[header.dtype] = counts.get(header.dtype, 0) + header.numel
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _as_dict(head_config: Any) -> Dict[str, Any]:
    return json.loads(json.dumps(head_config.to_dict(), default=str))


# ---------------------------------------------------------------------------------------------------------------------
# The human-readable form.

def render(description: CheckpointDescription) -> str:
    """A few aligned lines: what the checkpoint is, then what loading it would do."""
    d = description
    rows: List[Tuple[str, str]] = [("checkpoint", d.checkpoint), ("kind", _kind_line(d))]
    architectures = f" ({', '.join(d.architectures)})" if d.architectures else ""
    rows.append(("model", f"{d.model_type}{architectures}"))
    if d.custom_code:
        rows.append(("custom code", f"{', '.join(d.custom_code.files)} (auto_map: {', '.join(d.custom_code.auto_map)}); "
                                    f"not imported (loading with trust_remote_code=True runs it)"))
    if d.task:
        rows.append(("task", d.task))
    if d.head_config is not None and d.kind != "archit-multihead":
        rows.append(("head config", json.dumps(d.head_config, sort_keys=True)))
    for name, head in (d.heads or {}).items():
        rows.append((f"head '{name}'", f"{head.task} {json.dumps(head.head_config, sort_keys=True)}"
                     + (", tied" if head.tied else "")))
    rows.append(("files", _files_line(d.files)))
    rows.append(("parameters", _parameters_line(d.parameters, d.dtypes)))
    rows.append(("base class", d.base_model_class))
    if d.planned:
        rows.append(("plan", d.planned))
    if d.note:
        rows.append(("", d.note))
    if d.would_load is not None:
        rows.append(("would load", f"{len(d.would_load)} tensors"))
        rows.append(("initialise", _listing(d.would_initialise or ())))
        rows.append(("unused", _listing(d.unused or ())))
        rows.append(("converted", _listing(d.converted or {})))
        if d.reads_tensor_data is False:
            rows.append(("reads", "no tensor data on this rank: under FSDP's RAM-efficient loading, local rank 0 "
                                  "reads and accelerate's FSDP preparation gives the weights to the other ranks"))
        if d.mismatched:
            rows.append(("mismatched", _listing([f"{key} (file {stored}, model {model})"
                                                 for key, stored, model in d.mismatched])))
    if d.plan_error:
        rows.append(("error", " ".join(d.plan_error.split())))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}".rstrip() for label, value in rows)


def _kind_line(d: CheckpointDescription) -> str:
    if d.kind is None:
        return "unknown (see the error below)"
    line = KINDS[d.kind]
    if d.archit_version:
        line += f" (archit {d.archit_version})"
    if d.head:
        line += f": {d.head}"
    if d.tied:
        line += ", output matrix tied to the input embeddings"
    if d.heads:
        line += f": {len(d.heads)} head{'s' if len(d.heads) != 1 else ''}"
    if d.key_prefix and d.kind == "base":
        line += f", keys prefixed '{d.key_prefix}'"
    return line


def _files_line(files: WeightFiles) -> str:
    weights = files.weights
    names = ", ".join(w.name for w in weights[:3]) + (f", ... ({len(weights)} shards)" if len(weights) > 3 else "")
    sharding = f"sharded ({files.index})" if files.sharded else "one file"
    return f"{files.format}, {sharding}, {_size(files.bytes)}: {names}"


def _parameters_line(parameters: int, dtypes: Dict[str, int]) -> str:
    if len(dtypes) == 1:
        return f"{parameters:,} ({next(iter(dtypes))})"
    shares = ", ".join(f"{dtype} {count:,}" for dtype, count in dtypes.items())
    return f"{parameters:,} ({shares})"


def _size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _listing(keys: Iterable[str]) -> str:
    """``"none"``, or the count and the first four keys (``planning.listing_of``, as the loader's messages list them)."""
    keys = list(keys)
    return listing_of(keys, shown=4) if keys else "none"
