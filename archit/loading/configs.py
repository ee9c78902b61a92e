"""Reading a checkpoint's ``config.json``: the base model's transformers config and the stored head config.

An archit checkpoint nests ``{"base_model_config": {...}, "head_config": {...}}``; a transformers checkpoint is the base
config alone. Head configs are dataclasses, rebuilt from their dictionaries by ``dataclass_from_dict``.
"""
import typing
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any, Dict, Optional, Tuple, Type

from transformers import CONFIG_MAPPING, PretrainedConfig

from .. import _compat as compat
from .checkpointcode import config_class_of_code

__all__ = ["split_checkpoint_config", "base_config_from_dict", "dataclass_from_dict", "stored_head_prefixes",
           "HEADS_PATH"]

HEADS_PATH = "heads."
"""Where a model with several heads keeps them (``heads.<name>.``), and so the key prefix of their weights."""


def split_checkpoint_config(config_dict: Dict[str, Any], checkpoint: str, head_config: Optional[Any] = None,
                            head_config_class: Optional[type] = None) -> Tuple[Dict[str, Any], Optional[Any]]:
    """
    ``(base model config dict, head config)`` of a checkpoint's ``config.json``: an archit checkpoint nests both, a
    transformers checkpoint is the base config alone. A ``head_config`` given wins; otherwise the stored one is read
    as ``head_config_class``, and its absence is an error. Without ``head_config_class`` no head config is wanted.
    """
    is_archit = "base_model_config" in config_dict
    base_dict = dict(config_dict["base_model_config"] if is_archit else config_dict)
    if head_config is not None or head_config_class is None:
        return base_dict, head_config
    stored = config_dict.get("head_config") if is_archit else None
    if stored is None and is_archit and "heads" in config_dict:
        stored = _only_head(config_dict, checkpoint)["head_config"]
    if stored is None:
        raise ValueError(f"Checkpoint '{checkpoint}' holds no head config (it is not an archit checkpoint): pass "
                         f"head_config=, e.g. {head_config_class.__name__}(...).")
    return base_dict, dataclass_from_dict(head_config_class, stored)


def stored_head_prefixes(config_dict: Dict[str, Any]) -> Dict[str, str]:
    """For loading a single head from an archit checkpoint: the key prefix of its stored head, relative to the model's
    head (``{"heads.ner.": ""}`` for a checkpoint of a model with one head named ``ner``; nothing for a single-task
    checkpoint, whose head keys are the model's own)."""
    if "heads" not in config_dict:
        return {}
    return {f"{HEADS_PATH}{_only_head_name(config_dict)}.": ""}


def _only_head_name(config_dict: Dict[str, Any], checkpoint: str = "") -> str:
    names = list(config_dict["heads"])
    if len(names) != 1:
        where = f"Checkpoint '{checkpoint}'" if checkpoint else "The checkpoint"
        raise ValueError(f"{where} holds {len(names)} heads ({', '.join(names)}): load it with "
                         f"ModelWithHeads.from_pretrained, or load one head with ModelWithHeads' asTask().")
    return names[0]


def _only_head(config_dict: Dict[str, Any], checkpoint: str) -> Dict[str, Any]:
    return config_dict["heads"][_only_head_name(config_dict, checkpoint)]


def base_config_from_dict(config_dict: Dict[str, Any], config_class: Optional[Type[PretrainedConfig]] = None,
                          checkpoint: Optional[str] = None, trust_remote_code: bool = False,
                          **hub_kwargs: Any) -> PretrainedConfig:
    """
    A base model's transformers config from its dictionary: ``config_class.from_dict``. Without a ``config_class``, or
    with the generic ``PretrainedConfig`` (``AutoBaseModel``'s), the class is picked as ``AutoConfig.from_pretrained``
    picks it: the config class of the code that ships with ``checkpoint`` (its ``auto_map``) when the caller trusts it
    (``trust_remote_code``, imported with ``hub_kwargs``), else transformers' class for the dictionary's ``model_type``;
    a checkpoint that needs its own code and is not trusted is refused, before any of that code is imported.
    """
    config_dict = compat.stored_config_dict(config_dict)
    if config_class is not None and config_class.model_type:
        return config_class.from_dict(config_dict)
    code_class = config_class_of_code(config_dict, checkpoint or "the checkpoint", trust_remote_code, **hub_kwargs)
    if code_class is not None:
        return code_class.from_dict(config_dict)
    model_type = config_dict.get("model_type")
    if not model_type:
        raise ValueError("The base model config names no model_type, so its transformers config class is unknown: "
                         "pass the config class (base_model_config_class=), or use the family's base model class.")
    try:
        config_class = CONFIG_MAPPING[model_type]
    except KeyError:
        raise ValueError(f"The base model config's model_type '{model_type}' is not a family of the installed "
                         f"transformers {compat.TRANSFORMERS_VERSION}, and the checkpoint ships no code for it "
                         f"(no AutoConfig in an auto_map): a newer transformers release may have it.") from None
    return config_class.from_dict(config_dict)


def dataclass_from_dict(cls: type, as_dict: Dict[str, Any]) -> Any:
    """
    Build dataclass ``cls`` from a dictionary, recursively for fields that are dataclasses or enums.
    Keys that are not fields of ``cls`` are passed to its constructor too (and fail there if it does not take them).
    """
    if not is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    kwargs = {}
    for name, value in as_dict.items():
        expected = hints.get(name) if name in known else None
        if isinstance(expected, type) and is_dataclass(expected) and isinstance(value, dict):
            value = dataclass_from_dict(expected, value)
        elif isinstance(expected, type) and issubclass(expected, Enum) and not isinstance(value, expected):
            value = _enum_member(expected, value)
        kwargs[name] = value
    return cls(**kwargs)


def _enum_member(enum_class: type, value: Any) -> Enum:
    try:
        return enum_class(value)
    except ValueError:
        return enum_class[value]  # Serialised by name.
