"""``archit export CHECKPOINT OUT``: an archit checkpoint as the transformers task model computing the same function
(``ModelWithHead.toHuggingFace``), saved with transformers' own ``save_pretrained`` so that plain transformers loads it
(published crash-consistently, as archit's own saves are: ``save_through_transformers``)."""
import logging
import re
from pathlib import Path
from typing import Any, Optional

from ..instantiation.multihead import task_of
from ..loading.files import read_config_dict
from ..loading.saving import save_through_transformers
from .classes import CommandError, fitting_base_class, named_class

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def export_checkpoint(checkpoint: str, out: str, base: Optional[str] = None, task: Optional[str] = None,
                      head_config: Optional[str] = None, trust_remote_code: bool = False) -> str:
    """Load ``checkpoint`` as its task (``task``, else the checkpoint's ``"task"`` field) on its base model class
    (``base``, else the one fitting its ``model_type``), export it and save it to ``out``; answers the transformers
    class's name. ``trust_remote_code`` lets a base model that ships its own code (``auto_map``) be built from it, and
    the export be the code's own task class. ``CommandError`` with exit code 1 when transformers has no equivalent (why,
    in the message)."""
    if Path(out).is_file():
        raise CommandError(f"'{out}' is a file; export writes a folder.")
    if not Path(checkpoint).exists() and not _HUB_ID.match(checkpoint):
        raise CommandError(f"'{checkpoint}' does not exist (and is not a hub model id).")
    try:
        config_dict = read_config_dict(checkpoint)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from error
    task_class: Any = named_class(task, "task") if task else _stored_task(config_dict, checkpoint)
    base_dict = config_dict.get("base_model_config", config_dict)
    base_class = named_class(base, "base") if base else fitting_base_class(base_dict.get("model_type"))
    logger.info("Loading '%s' as %s on %s.", checkpoint, task_class.__name__, base_class.__name__)
    try:
        model = task_class.from_pretrained(checkpoint, base_class, dtype="auto", trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise CommandError(str(error)) from error
    try:
        hf_model = model.toHuggingFace()
    except NotImplementedError as error:
        raise CommandError(str(error), exit_code=1) from error
    save_through_transformers(out, hf_model.save_pretrained)  # Crash-consistent, with checksums.
    return type(hf_model).__name__


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
        what = ("does not name its task (the published ArchIt wrote none)" if "base_model_config" in config_dict else
                "is not an archit checkpoint")
        raise CommandError(f"Checkpoint '{checkpoint}' {what}: pass --task (e.g. --task ForMaskedLM).")
    try:
        return task_of(name)
    except ValueError as error:
        raise CommandError(str(error)) from error
