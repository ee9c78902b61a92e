"""Reading a checkpoint's ``config.json``: the base model's transformers config and the stored head config.

An archit checkpoint nests ``{"base_model_config": {...}, "head_config": {...}}``; a transformers checkpoint is the base
config alone. Head configs are dataclasses, rebuilt from their dictionaries by ``dataclass_from_dict``.
"""
import importlib
import os
import typing
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any, Dict, Mapping, Optional, Tuple, Type

from transformers import CONFIG_MAPPING, GenerationConfig, PretrainedConfig

from .. import _compat as compat
from .checkpointcode import config_class_of_code
from .commits import open_settled
from .errors import CheckpointError
from .files import CONFIG_NAME, GENERATION_CONFIG_NAME, read_json_file, resolve_file

__all__ = ["split_checkpoint_config", "base_config_from_dict", "dataclass_from_dict", "stored_head_prefixes",
           "config_path", "check_model_type", "FieldTypeError", "HEADS_PATH", "named_class", "head_spec_of",
           "heads_of_checkpoint", "TASKS_MODULE", "read_generation_config"]

TASKS_MODULE = "archit.instantiation.tasks"
"""Where a task a checkpoint names by its bare name lives (archit's own tasks; others are ``module:Class``)."""

HEADS_PATH = "heads."
"""Where a model with several heads keeps them (``heads.<name>.``), and so the key prefix of their weights."""


class FieldTypeError(TypeError):
    """A dictionary value of the wrong type for a dataclass field (``dataclass_from_dict``); ``field`` names it."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def config_path(checkpoint: str) -> str:
    """The checkpoint's ``config.json``, as error messages name it."""
    return os.path.join(checkpoint, CONFIG_NAME)


def split_checkpoint_config(config_dict: Dict[str, Any], checkpoint: str, head_config: Optional[Any] = None,
                            head_config_class: Optional[Type[Any]] = None) -> Tuple[Dict[str, Any], Optional[Any]]:
    """
    ``(base model config dict, head config)`` of a checkpoint's ``config.json``: an archit checkpoint nests both, a
    transformers checkpoint is the base config alone. A ``head_config`` given wins; otherwise the stored one is read
    as ``head_config_class``, and its absence is an error. Without ``head_config_class`` no head config is wanted.
    """
    is_archit = "base_model_config" in config_dict
    if is_archit:
        _check_archit_structure(config_dict, checkpoint)
    base_dict = dict(config_dict["base_model_config"] if is_archit else config_dict)
    if head_config is not None or head_config_class is None:
        return base_dict, head_config
    stored, key = (config_dict.get("head_config"), "head_config") if is_archit else (None, None)
    if stored is None and is_archit and "heads" in config_dict:
        name = _only_head_name(config_dict, checkpoint)
        stored, key = config_dict["heads"][name]["head_config"], f"heads.{name}.head_config"
    if stored is None:
        raise ValueError(f"Checkpoint '{checkpoint}' holds no head config (it is not an archit checkpoint): pass "
                         f"head_config=, e.g. {head_config_class.__name__}(...).")
    try:
        return base_dict, dataclass_from_dict(head_config_class, stored)
    except FieldTypeError as error:
        raise CheckpointError(config_path(checkpoint), str(error), key=f"{key}.{error.field}") from error
    except TypeError as error:  # A field the head config does not have.
        raise CheckpointError(config_path(checkpoint), f"is not a {head_config_class.__name__}: {error}",
                              key=key) from error


def read_generation_config(checkpoint: str, **hub_kwargs: Any) -> Optional[GenerationConfig]:
    """
    The checkpoint's ``generation_config.json`` (what transformers' ``save_pretrained`` writes for a model that
    generates, and archit's for its causal LMs), read by transformers' own ``GenerationConfig.from_pretrained``;
    ``None`` when the checkpoint has none. A file that is no JSON object is a ``CheckpointError`` naming it.
    """
    path = resolve_file(checkpoint, GENERATION_CONFIG_NAME, **hub_kwargs)
    if path is None:
        return None
    if not isinstance(read_json_file(path), dict):
        raise CheckpointError(path, "is not a JSON object")
    return open_settled(path, lambda found: GenerationConfig.from_pretrained(os.path.dirname(found),
                                                                             config_file_name=os.path.basename(found)))


def _check_archit_structure(config_dict: Dict[str, Any], checkpoint: str) -> None:
    """An archit ``config.json`` nests objects: ``base_model_config``, ``head_config`` (or ``heads``: name ->
    ``{"task", "head_config"}``), ``loss_weights``: name -> number."""
    def fail(key: str, what: str) -> None:
        raise CheckpointError(config_path(checkpoint), f"must be {what}, got {type(config_dict_at(key)).__name__} "
                                                       f"{config_dict_at(key)!r:.100}", key=key)

    def config_dict_at(key: str) -> Any:
        value: Any = config_dict
        for part in key.split("."):
            value = value[part]
        return value

    if not isinstance(config_dict["base_model_config"], dict):
        fail("base_model_config", "an object (the base model's transformers config)")
    if config_dict.get("head_config") is not None and not isinstance(config_dict["head_config"], dict):
        fail("head_config", "an object (the head config's fields)")
    if "heads" in config_dict:
        if not isinstance(config_dict["heads"], dict):
            fail("heads", "an object (head name -> task and head config)")
        for name, spec in config_dict["heads"].items():
            if not isinstance(spec, dict):
                fail(f"heads.{name}", "an object with task and head_config")
            if not isinstance(spec.get("task"), str):
                fail(f"heads.{name}.task", "a task class name")
            if not isinstance(spec.get("head_config"), dict):
                fail(f"heads.{name}.head_config", "an object (the head config's fields)")
    if config_dict.get("loss_weights") is not None:
        weights = config_dict["loss_weights"]
        if not isinstance(weights, dict) or not all(type(w) in (int, float) for w in weights.values()):
            fail("loss_weights", "an object of head name -> number")


def stored_head_prefixes(config_dict: Dict[str, Any]) -> Dict[str, str]:
    """For loading a single head from an archit checkpoint: the key prefix of its stored head, relative to the model's
    head (``{"heads.ner.": ""}`` for a checkpoint of a model with one head named ``ner``; nothing for a single-task
    checkpoint, whose head keys are the model's own)."""
    if "heads" not in config_dict:
        return {}
    return {f"{HEADS_PATH}{_only_head_name(config_dict)}.": ""}


def head_spec_of(spec: Any) -> Tuple[Type[Any], Any]:
    """A head's ``(task class, head config)`` from such a pair or from its stored dictionary (``{"task": name,
    "head_config": {...}}``, as a multi-head checkpoint stores each head)."""
    if isinstance(spec, dict):
        task = named_class(spec["task"], TASKS_MODULE)
        return task, dataclass_from_dict(task.headClass().configClass(), spec.get("head_config") or {})
    task, head_config = spec
    return task, head_config


def heads_of_checkpoint(config_dict: Dict[str, Any], heads: Optional[Mapping[str, Any]],
                        checkpoint: str) -> Tuple[Dict[str, Tuple[type, Any]], Dict[str, str]]:
    """
    For a model with several heads loaded from a checkpoint's ``config.json``: the heads to build (name -> ``(task,
    head config)``) and the prefixes of stored head weights that fill them (stored prefix -> ``"<name>."``). The heads
    are those the caller gives (``heads``; a head config of ``None`` is the stored one) and those a multi-head checkpoint
    stores; a single-task archit checkpoint's head fills the one head without a head config (or its task's, when no
    heads are given); a checkpoint of a base model has no heads but the given ones (``{}``: the body alone).
    """
    given = heads
    heads = dict(heads or {})
    if "heads" in config_dict:  # A multi-head checkpoint.
        stored = {name: head_spec_of(spec) for name, spec in config_dict["heads"].items()}
        specs = dict(stored)
        for name, (task, head_config) in heads.items():  # Given heads win; a missing config is the stored one.
            specs[name] = (task, head_config if head_config is not None else stored.get(name, (task, None))[1])
        return _complete(specs, checkpoint), {f"{HEADS_PATH}{n}.": f"{n}." for n in stored if n in specs}
    if "base_model_config" in config_dict:  # A single-task archit checkpoint: its head fills one of ours.
        if not heads:
            if not config_dict.get("task"):
                raise ValueError(f"Checkpoint '{checkpoint}' does not say its task (it was saved by the published "
                                 f"ArchIt): pass heads={{name: (task class, None)}}.")
            task = named_class(config_dict["task"], TASKS_MODULE)
            heads = {task.__name__: (task, None)}
        receiving = [n for n, (_, c) in heads.items() if c is None] or [next(iter(heads))]
        if len(receiving) > 1:
            raise ValueError(f"Checkpoint '{checkpoint}' holds one head, but several heads have no head config: "
                             f"{receiving}.")
        stored_config = dataclass_from_dict(heads[receiving[0]][0].headClass().configClass(),
                                            config_dict.get("head_config") or {})
        specs = {n: (t, c if c is not None else stored_config) for n, (t, c) in heads.items()}
        return specs, {"head.": f"{receiving[0]}."}
    if given is None:
        raise ValueError(f"Checkpoint '{checkpoint}' is not a checkpoint of archit heads: pass heads="
                         f"{{name: (task class, head config)}}, or {{}} for the body alone (add heads later with "
                         f"addHead or loadHead).")
    return _complete(heads, checkpoint), {}


def _complete(specs: Dict[str, Tuple[type, Any]], checkpoint: str) -> Dict[str, Tuple[type, Any]]:
    missing = [name for name, (_, head_config) in specs.items() if head_config is None]
    if missing:
        raise ValueError(f"Checkpoint '{checkpoint}' holds no config for the heads {missing}: give their head configs.")
    return dict(specs)


def _only_head_name(config_dict: Dict[str, Any], checkpoint: str = "") -> str:
    names = list(config_dict["heads"])
    if len(names) != 1:
        where = f"Checkpoint '{checkpoint}'" if checkpoint else "The checkpoint"
        raise ValueError(f"{where} holds {len(names)} heads ({', '.join(names)}): load it with "
                         f"ModelWithHeads.from_pretrained, or load one head with ModelWithHeads' asTask().")
    return names[0]


def base_config_from_dict(config_dict: Dict[str, Any], config_class: Optional[Type[PretrainedConfig]] = None,
                          *, source: str = CONFIG_NAME, checkpoint: Optional[str] = None,
                          trust_remote_code: bool = False, **hub_kwargs: Any) -> PretrainedConfig:
    """
    A base model's transformers config from its dictionary: ``config_class.from_dict``. Without a ``config_class``, or
    with the generic ``PretrainedConfig`` (``AutoBaseModel``'s), the class is picked as ``AutoConfig.from_pretrained``
    picks it: the config class of the code that ships with ``checkpoint`` (its ``auto_map``) when the caller trusts it
    (``trust_remote_code``, imported with ``hub_kwargs``), else transformers' class for the dictionary's ``model_type``;
    a checkpoint that needs its own code and is not trusted is refused (``ValueError``) before any of that code is
    imported. A value of another type than the class's default for that field (a string where the default is a number,
    ...), or a dictionary the class refuses, is a ``CheckpointError`` naming ``source`` (the file the dictionary came
    from) and the field.
    """
    config_dict = compat.stored_config_dict(config_dict)
    if config_class is None or not config_class.model_type:
        config_class = config_class_of_code(config_dict, checkpoint or source, trust_remote_code, **hub_kwargs)
    if config_class is None or not config_class.model_type:
        model_type = config_dict.get("model_type")
        if not model_type:
            raise CheckpointError(source, "names no model_type, so its transformers config class is unknown: pass the "
                                          "config class (base_model_config_class=), or use the family's base model "
                                          "class", key="model_type")
        check_model_type(model_type, source)
        config_class = CONFIG_MAPPING[model_type]
    _check_field_types(config_class, config_dict, source)
    try:
        return config_class.from_dict(config_dict)
    except Exception as error:  # transformers 5 validates field types itself (huggingface_hub's strict dataclasses).
        raise CheckpointError(source, f"is not a valid {config_class.__name__}: {error}") from error


def check_model_type(model_type: Any, source: str) -> None:
    """A stored ``model_type`` must be a family of the installed transformers: else a ``CheckpointError``."""
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise CheckpointError(source, f"{model_type!r} is not a family of the installed transformers "
                                      f"{compat.TRANSFORMERS_VERSION}, and the checkpoint ships no code for it (no "
                                      f"AutoConfig in an auto_map): a damaged file, or a newer transformers release may "
                                      f"have it", key="model_type")


def _check_field_types(config_class: Type[PretrainedConfig], config_dict: Dict[str, Any], source: str) -> None:
    """Values whose type cannot be the field's, judged by the type of the config class's own default for the field
    (only where that default is a bool, int, float or str): a string for a size, a number for a flag. Token ids may be
    lists (several end-of-sequence tokens); fields whose default is ``None`` or a container are not judged, nor is the
    dtype (its default is ``None``, and reading ``torch_dtype`` of a 4.56+ config logs a deprecation). An int default of
    0 does not say the field counts (DeBERTa's ``pooler_dropout`` defaults to ``0`` before transformers 5.23 and to
    ``0.0`` from then on, so a 5.23 save holds a float rate): any number fits it, except for token ids."""
    try:
        defaults = config_class()
    except Exception:  # A config class without defaults for every field: nothing to judge by.
        return
    for key, value in config_dict.items():
        if key in compat.CONFIG_DTYPE_KEYS:
            continue
        default = getattr(defaults, key, None)
        if value is None or default is None or not isinstance(default, (bool, int, float, str)):
            continue
        if isinstance(default, bool):
            fits = isinstance(value, bool)
        elif isinstance(default, int):
            fits = (type(value) is int or (isinstance(value, list) and all(type(v) is int for v in value))
                    or (default == 0 and type(value) is float and not key.endswith("token_id")))
        elif isinstance(default, float):
            fits = type(value) in (int, float)
        else:
            fits = isinstance(value, str)
        if not fits:
            expected = next(name for kind, name in ((bool, "a bool"), (int, "an int"), (float, "a float"),
                                                    (str, "a string")) if isinstance(default, kind))
            raise CheckpointError(source, f"has {type(value).__name__} {value!r:.100} where {config_class.__name__} "
                                          f"expects {expected} (its default is {default!r})", key=key)


def named_class(name: str, default_module: str) -> Any:
    """The class a checkpoint or a command line names: ``package.module:Qualified.Name``, or a bare (possibly dotted)
    name of ``default_module``. ``ValueError`` saying why when it cannot be imported."""
    module_name, _, qualified = name.rpartition(":")
    try:
        owner: Any = importlib.import_module(module_name or default_module)
        for part in qualified.split("."):
            owner = getattr(owner, part)
        return owner
    except (ImportError, AttributeError) as error:
        raise ValueError(f"'{name}' is neither a name of {default_module} nor an importable 'package.module:Class' "
                         f"({error}).") from None


def dataclass_from_dict(cls: Type[Any], as_dict: Dict[str, Any]) -> Any:
    """
    Build dataclass ``cls`` from a dictionary, recursively for fields that are dataclasses or enums.
    Keys that are not fields of ``cls`` are passed to its constructor too (and fail there if it does not take them).
    Fields the dictionary lacks take the class's ``legacy_defaults`` where it declares one (a head config stored before
    the field existed keeps computing what it computed then), else the dataclass default.
    """
    if not is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    as_dict = {**{k: v for k, v in getattr(cls, "legacy_defaults", {}).items() if k in known}, **as_dict}
    kwargs = {}
    for name, value in as_dict.items():
        expected = hints.get(name) if name in known else None
        if isinstance(expected, type) and is_dataclass(expected) and isinstance(value, dict):
            try:
                value = dataclass_from_dict(expected, value)
            except FieldTypeError as error:
                raise FieldTypeError(str(error), f"{name}.{error.field}") from error
        elif isinstance(expected, type) and issubclass(expected, Enum) and not isinstance(value, expected):
            value = _enum_member(expected, value, name)
        elif expected is not None and not _fits(value, expected):
            raise FieldTypeError(f"{cls.__name__}.{name} must be {_type_name(expected)}, got "
                                 f"{type(value).__name__} {value!r:.100}", name)
        kwargs[name] = value
    return cls(**kwargs)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (from JSON) can be a field typed ``hint``: checked for bool, int, float, str, ``Optional``
    and unions of those, dataclasses (a dictionary); any other hint accepts anything."""
    if typing.get_origin(hint) is typing.Union:
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return type(value) is int
    if hint is float:
        return type(value) in (int, float)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and is_dataclass(hint):
        return isinstance(value, (dict, hint))
    return True


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _enum_member(enum_class: Type[Any], value: Any, name: str) -> Enum:
    try:
        return enum_class(value)
    except ValueError:
        pass
    try:
        return enum_class[value]  # Serialised by name.
    except (KeyError, TypeError):
        raise FieldTypeError(f"{name} must be one of {[m.value for m in enum_class]}, got {value!r:.100}",
                             name) from None
