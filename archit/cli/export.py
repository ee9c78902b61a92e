"""``archit export CHECKPOINT OUT``: an archit checkpoint as the transformers task model computing the same function
(``ModelWithHead.toHuggingFace``), saved with transformers' own ``save_pretrained`` so that plain transformers loads it
(published crash-consistently, as archit's own saves are: ``save_through_transformers``)."""
import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, Optional, Type

from ..instantiation.multihead import task_of
from ..loading.files import read_config_dict
from ..loading.hfmodels import transformers_head_config
from ..loading.saving import save_through_transformers
from .classes import (
    CommandError,
    fitting_base_class,
    head_config_of,
    is_task_architecture,
    named_class,
    transformers_task,
    valid_names,
)
from .guidance import EXAMPLE_HEAD_CONFIG, EXAMPLE_TASK
from .messages import listing

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def export_checkpoint(checkpoint: str, out: str, base: Optional[str] = None, task: Optional[str] = None,
                      head_config: Optional[str] = None, trust_remote_code: bool = False) -> str:
    """Load ``checkpoint`` as its task on its base model class, export it and save it to ``out``; answers the
    transformers class's name. The task: ``task``, else an archit checkpoint's ``"task"``, else (a transformers task
    model) the archit task computing what its head computes, as ``archit inspect`` plans it. The base model class:
    ``base``, else the one fitting ``model_type``. ``head_config``: a JSON object, the task's head config (a base model
    has none: its new head needs one). ``trust_remote_code`` lets a base model that ships its own code (``auto_map``)
    be built from it, and the export be the code's own task class. ``CommandError`` with exit code 1 when transformers
    has no equivalent (why, in the message)."""
    if Path(out).is_file():
        raise CommandError(f"'{out}' is a file; export writes a folder.")
    if not Path(checkpoint).exists() and not _HUB_ID.match(checkpoint):
        raise CommandError(f"'{checkpoint}' does not exist (and is not a hub model id).")
    try:
        stored_head_config = json.loads(head_config) if head_config is not None else None
    except ValueError as error:
        raise CommandError(f"--head-config is not JSON: {error}.") from None
    try:
        config_dict = read_config_dict(checkpoint)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from error
    base_dict = config_dict.get("base_model_config", config_dict)
    base_class = named_class(base, "base") if base else fitting_base_class(base_dict.get("model_type"))
    if task:
        task_class: Any = named_class(task, "task")
    elif "base_model_config" in config_dict:
        task_class = _stored_task(config_dict, checkpoint)
    else:
        task_class = _transformers_task(config_dict, checkpoint, base_class)
    head_config_object = head_config_of(task_class, stored_head_config) if stored_head_config is not None else None
    if head_config_object is None and _is_base_model(config_dict, base_class):
        raise CommandError(f"'{checkpoint}' is a base model (no head, so no head config): pass --head-config for the "
                           f"new {task_class.__name__} head, {_head_config_example(task_class)}.")
    logger.info("Loading '%s' as %s on %s.", checkpoint, task_class.__name__, base_class.__name__)
    try:
        model = task_class.from_pretrained(checkpoint, base_class, head_config_object, dtype="auto",
                                           trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError) as error:
        message = str(error)
        if "pass head_config=" in message:  # The Python argument: the command's is --head-config.
            message = f"{message.split(': pass head_config=')[0]}: pass --head-config, {_head_config_example(task_class)}."
        raise CommandError(message) from error
    try:
        hf_model = model.toHuggingFace()
    except NotImplementedError as error:
        raise CommandError(str(error), exit_code=1) from error
    save_through_transformers(out, hf_model.save_pretrained)  # Crash-consistent, with checksums.
    return type(hf_model).__name__


def _is_base_model(config_dict: Dict[str, Any], base_class: Type[Any]) -> bool:
    """Whether a checkpoint is a transformers base model (no task architecture, not archit's)."""
    return "base_model_config" not in config_dict and not any(
        is_task_architecture(name, base_class) for name in config_dict.get("architectures") or [])


def _transformers_task(config_dict: Dict[str, Any], checkpoint: str, base_class: Type[Any]) -> type:
    """The archit task computing what a transformers task model's head computes, as ``archit inspect`` plans it; a
    ``CommandError`` saying what to pass when there is none (a base model; a head archit does not have)."""
    task = transformers_task(base_class, config_dict)
    if task is not None and transformers_head_config(task, base_class, config_dict) is not None:
        return task
    example = f"e.g. --task {EXAMPLE_TASK} --head-config '{EXAMPLE_HEAD_CONFIG}'"
    if _is_base_model(config_dict, base_class):
        raise CommandError(f"'{checkpoint}' is a base model (no head): export needs a task and a head config for a "
                           f"new head, {example}. Tasks: {listing(valid_names('task'))}.")
    architectures = ", ".join(config_dict.get("architectures") or [])
    raise CommandError(f"No archit task computes what the head of {architectures} computes on model type "
                       f"'{config_dict.get('model_type')}': export a new head instead with --task and --head-config, "
                       f"{example}.", exit_code=1)


def _head_config_example(task_class: Type[Any]) -> str:
    """``"a JSON object of X's fields (a, b)"``, and an example for archit's own example task."""
    config_class = task_class.headClass().configClass()
    names = [field.name for field in dataclasses.fields(config_class)]
    what = f"a JSON object of {config_class.__name__}'s fields ({', '.join(names)})"
    example = f"; e.g. --head-config '{EXAMPLE_HEAD_CONFIG}'" if task_class.__name__ == EXAMPLE_TASK else ""
    return what + example


def _stored_task(config_dict: dict, checkpoint: str) -> type:
    """The task an archit checkpoint names: its ``"task"``, or that of its only head."""
    heads = config_dict.get("heads")
    name = config_dict.get("task")
    if name is None and isinstance(heads, dict) and len(heads) == 1:
        name = next(iter(heads.values())).get("task")
    if isinstance(heads, dict) and len(heads) > 1:
        raise CommandError(f"Checkpoint '{checkpoint}' holds {len(heads)} heads ({', '.join(heads)}); a transformers "
                           f"task model has one: save the one to export with ModelWithHeads' asTask(name), then export "
                           f"that.")
    if name is None:
        raise CommandError(f"Checkpoint '{checkpoint}' does not name its task (the published ArchIt wrote none): pass "
                           f"the task its head is for, e.g. --task {EXAMPLE_TASK}. Tasks: "
                           f"{listing(valid_names('task'))}.")
    try:
        return task_of(name)
    except ValueError as error:
        raise CommandError(str(error)) from error
