"""The classes a command works with: archit's base model classes and tasks by name (or ``package.module:Class``), the
base model class that fits a checkpoint, and the archit task that reproduces a transformers task model's head."""
import json
import re
from typing import Any, Dict, List, Optional, Type

from ..instantiation import basemodels, tasks
from ..instantiation.abstracts import BaseModel, ModelWithHead
from ..loading import configs
from ..loading.hfmodels import checkpoint_suffixes, declared, equivalent_suffix
from .messages import CommandError, did_you_mean, listing

__all__ = ["CommandError", "named_class", "head_config_of", "valid_names", "fitting_base_class", "transformers_head", "transformers_task",
           "task_head", "is_task_architecture"]


def named_class(name: str, kind: str) -> type:
    """The class ``name`` stands for: a name of ``archit.instantiation.basemodels`` (``kind="base"``: ``RobertaBaseModel``)
    or ``archit.instantiation.tasks`` (``kind="task"``: ``ForMaskedLM``), or ``package.module:Class`` (``Class`` may be
    dotted), resolved as a checkpoint's task is (``archit.loading.configs.named_class``). A bare name that is none of
    archit's gets the valid names, and the closest of them, in the ``CommandError``."""
    required, where = (BaseModel, basemodels) if kind == "base" else (ModelWithHead, tasks)
    what, plural = ("base model class", "Base model classes") if kind == "base" else ("task", "Tasks")
    try:
        owner = configs.named_class(name, where.__name__)
    except ValueError as error:
        if ":" in name:  # A module of the user's own: its import error says why.
            raise CommandError(str(error)) from None
        valid = valid_names(kind)
        raise CommandError(f"'{name}' is neither an archit {what} nor an importable 'package.module:Class';"
                           f"{did_you_mean(name, valid)} {plural}: {listing(valid)}.") from None
    if not (isinstance(owner, type) and issubclass(owner, required)):
        raise CommandError(f"'{name}' is not a {required.__name__} subclass, so not a {kind} class.")
    return owner


def head_config_of(task: Type[Any], head_config: Any) -> Any:
    """``task``'s head config built from a JSON object (``--head-config``), as the matrix worker builds it; a
    ``CommandError`` naming ``--head-config`` when it is not an object or does not fit."""
    if not isinstance(head_config, dict):
        raise CommandError(f"--head-config must be a JSON object, not {json.dumps(head_config)}.")
    try:
        return task.headClass().configClass()(**head_config)
    except TypeError as error:
        raise CommandError(f"--head-config does not fit {task.__name__}'s head config: {error}.") from None


def valid_names(kind: str) -> List[str]:
    """archit's own names of ``kind`` (``"base"``: the base model classes of ``archit.instantiation.basemodels``;
    ``"task"``: ``archit.instantiation.tasks.TASKS``), as ``--base``/``--task`` take them."""
    if kind == "task":
        return list(tasks.TASKS)
    return [name for name in basemodels.__all__
            if isinstance(getattr(basemodels, name), type) and issubclass(getattr(basemodels, name), BaseModel)]


def fitting_base_class(model_type: Optional[str]) -> type:
    """archit's base model class for a checkpoint's ``model_type``: the named one of ``archit.instantiation.basemodels``
    whose config class has that ``model_type`` (``RobertaBaseModel`` for ``"roberta"``), else ``AutoBaseModel``."""
    for name in basemodels.__all__:
        candidate = getattr(basemodels, name)
        if isinstance(candidate, type) and issubclass(candidate, BaseModel) and candidate is not basemodels.AutoBaseModel:
            config_class = getattr(candidate, "config_class", None)  # None where the installed transformers lacks it.
            if model_type and getattr(config_class, "model_type", None) == model_type:
                return candidate
    return basemodels.AutoBaseModel


def _builtin_tasks() -> List[Type[Any]]:
    return [getattr(tasks, name) for name in tasks.TASKS]


def transformers_head(base_model_class: Type[Any], config_dict: Dict[str, Any]) -> Optional[str]:
    """What the head of a transformers task checkpoint does, from its ``architectures`` (``RobertaForTokenClassification``:
    ``"token classification"``, the ``purpose`` of the archit head computing the same; a head archit does not know: its
    name in words); ``None`` for a base model."""
    task = transformers_task(base_model_class, config_dict)
    if task is not None:
        return declared(task.headClass(), "purpose")
    for architecture in config_dict.get("architectures") or []:
        match = re.search(r"For([A-Z]\w*)$", architecture)
        if match:
            purpose = match.group(1)
            words = re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z0-9]*", purpose)  # NextSentencePrediction, CTC, MaskedLM
            return " ".join(word if len(word) > 1 and word.isupper() else word.lower() for word in words)
    return None


def transformers_task(base_model_class: Type[Any], config_dict: Dict[str, Any]) -> Optional[Type[Any]]:
    """The archit task whose head is the one of the transformers task checkpoint (before archit checks that the head
    computes the same function on this family), or ``None``: of archit's tasks whose head has the checkpoint's
    transformers equivalent (``hfEquivalentSuffix()``), the one whose ``hf_problem_type`` is the checkpoint's
    ``problem_type`` (a sequence classifier's says which loss it was trained with), else the first of ``tasks.TASKS``."""
    suffixes = checkpoint_suffixes(base_model_class, config_dict)
    if not suffixes:
        return None
    fitting = [task for task in _builtin_tasks() if equivalent_suffix(task.headClass(), None) == suffixes[0]]
    stored = config_dict.get("problem_type")
    return next((task for task in fitting if declared(task, "hf_problem_type") == stored), fitting[0] if fitting else None)


def task_head(task: Type[Any]) -> str:
    """What an archit task's head does, in words: the task's ``purpose`` (its class name when it declares none)."""
    return declared(task, "purpose") or task.__name__


def is_task_architecture(architecture: str, base_model_class: Type[Any]) -> bool:
    """Whether a name of ``architectures`` is a task model rather than the base model (``RobertaModel``, ...)."""
    return bool(re.search(r"For[A-Z]", architecture)
                or checkpoint_suffixes(base_model_class, {"architectures": [architecture]}))
