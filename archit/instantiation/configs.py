"""
The three configs of ArchIt's three main classes: ``BaseModelConfig`` (a standard view of any transformers config),
``HeadConfig`` (a dataclass per head) and ``CombinedConfig`` (the transformers config of a model-with-head, holding the
base model's transformers config and the head config).
"""
import json
import os
from dataclasses import asdict, dataclass, is_dataclass
from enum import Enum
from typing import Any, Dict, Generic, Optional, Type, TypeVar, Union

from transformers import PretrainedConfig

from .. import __version__ as archit_version
from .. import _compat as compat
from ..loading.configs import base_config_from_dict, config_path, dataclass_from_dict, split_checkpoint_config
from ..loading.files import HUB_KWARGS, read_config_dict

__all__ = ["BaseModelConfig", "HeadConfig", "CombinedConfig", "PC", "HC"]


@dataclass
class BaseModelConfig:
    """
    The properties every base model has, under one name each. transformers' ``PretrainedConfig`` only promises that
    such fields "are common"; ``BaseModel.standardiseConfig`` maps a family's names onto these.
    """
    # Relevant for heads:
    hidden_size: int
    hidden_dropout_prob: float
    vocab_size: Optional[int]  # None for models that read characters (CANINE).

    # Not used by heads, but every base model has them:
    num_hidden_layers: int
    num_attention_heads: int
    context_length: Optional[int]  # None for families without a position limit (ALiBi, ...).

    # Read by heads that copy a transformers head's details (the MLM head); None where the family has no such field.
    layer_norm_eps: Optional[float] = None
    hidden_act: Optional[str] = None


class RecursiveSerialisable:
    """Serialises to a dictionary, turning fields that have ``to_dict()`` (configs, dataclasses) into dictionaries too."""

    def to_dict(self) -> Dict[str, Any]:
        return {k: _to_serialisable(v) for k, v in vars(self).items()}


def _to_serialisable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _to_serialisable(v) for k, v in asdict(value).items()}
    if isinstance(value, Enum):
        return value.value
    return value


class HeadConfig(RecursiveSerialisable):
    """Base class of head configs. Subclasses are dataclasses; their fields are serialised under ``head_config``."""


PC = TypeVar("PC", bound=PretrainedConfig)
HC = TypeVar("HC", bound=HeadConfig)

_OWN_FIELDS = frozenset({"base_model_config", "head_config"})


class CombinedConfig(PretrainedConfig, Generic[PC, HC]):
    """
    The config of a model-with-head: the base model's transformers config and the head's config.

    Serialised as ``{"base_model_config": {...}, "head_config": {...}, "transformers_version": ...}`` (the format of
    the published ArchIt). Attribute access falls back to the base model's config: ``combined.hidden_size`` is
    ``combined.base_model_config.hidden_size``, and so are the fields transformers puts on every config (``pad_token_id``,
    ``tie_word_embeddings``, ...), for reading and for writing.
    """

    model_type = "archit"

    def __init__(self, base_model_config: Union[dict, PC, None] = None, head_config: Union[dict, HC, None] = None,
                 base_model_config_class: Optional[Type[PC]] = None, head_config_class: Optional[Type[HC]] = None,
                 **kwargs):
        base_model_config, head_config = _deserialise_parts(base_model_config, head_config,
                                                            base_model_config_class, head_config_class, kwargs)
        for key in ("transformers_version", "architectures", "archit_version", "_name_or_path", "name_or_path", "task"):
            kwargs.pop(key, None)  # Bookkeeping of the checkpoint, not settings.
        super().__init__(**kwargs)  # Before the parts exist, so that its defaults don't overwrite the base config's.
        object.__setattr__(self, "base_model_config", base_model_config)
        object.__setattr__(self, "head_config", head_config)

    def __getattribute__(self, name: str) -> Any:
        if name[0] != "_" and name not in _OWN_FIELDS:
            base = object.__getattribute__(self, "__dict__").get("base_model_config")
            if base is not None and name in vars(base):  # A data field of the base config shadows our own copy.
                return getattr(base, name)
        return super().__getattribute__(name)

    def __getattr__(self, name: str) -> Any:
        base = self.__dict__.get("base_model_config")  # Absent during copy/unpickling: no recursion then.
        if base is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(base, name)

    def __setattr__(self, name: str, value: Any) -> None:
        base = self.__dict__.get("base_model_config")
        if base is not None and name[0] != "_" and name not in _OWN_FIELDS and name in vars(base):
            setattr(base, name, value)
        else:
            super().__setattr__(name, value)

    def to_dict(self) -> Dict[str, Any]:
        stored = {
            "base_model_config": compat.stored_config_dict(self.base_model_config.to_dict()),
            "head_config": _to_serialisable(self.head_config),
            "transformers_version": str(compat.TRANSFORMERS_VERSION),
            "archit_version": archit_version,
        }
        if self.__dict__.get("task"):  # The task class (module:name) of the model this config was saved with.
            stored["task"] = self.__dict__["task"]
        return stored

    def to_diff_dict(self) -> Dict[str, Any]:
        return self.to_dict()

    def to_json_string(self, use_diff: bool = True) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"

    def to_json_file(self, json_file_path: Union[str, os.PathLike], use_diff: bool = True) -> None:
        with open(json_file_path, "w", encoding="utf-8") as handle:
            handle.write(self.to_json_string())

    def __repr__(self) -> str:
        return f"{self.__class__.__name__} {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CombinedConfig) and self.to_dict() == other.to_dict()

    __hash__ = object.__hash__

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], head_config: Optional[HC] = None,
                        base_model_config_class: Optional[Type[PC]] = None,
                        head_config_class: Optional[Type[HC]] = None, **kwargs) -> "CombinedConfig":
        """
        Read a checkpoint's ``config.json``: an archit checkpoint (nested base model and head configs) or a plain
        transformers checkpoint plus ``head_config``. A ``head_config`` given here wins over the checkpoint's. The base
        config is read as ``base_model_config_class``, or, when that is omitted, as the class of its ``model_type``
        (the config class of the checkpoint's own code with ``trust_remote_code=True``, as in ``from_pretrained``).
        """
        trust_remote_code = bool(kwargs.pop("trust_remote_code", False))
        unknown = set(kwargs) - set(HUB_KWARGS)
        if unknown:
            raise TypeError(f"CombinedConfig.from_pretrained() got unexpected keyword arguments {sorted(unknown)}.")
        config_dict = read_config_dict(str(pretrained_model_name_or_path), **kwargs)
        return cls.from_checkpoint_dict(config_dict, str(pretrained_model_name_or_path), head_config,
                                        base_model_config_class, head_config_class, trust_remote_code, **kwargs)

    @classmethod
    def from_checkpoint_dict(cls, config_dict: Dict[str, Any], checkpoint: str, head_config: Optional[HC],
                             base_model_config_class: Optional[Type[PC]],
                             head_config_class: Optional[Type[HC]], trust_remote_code: bool = False,
                             **hub_kwargs: Any) -> "CombinedConfig":
        """The config of a checkpoint's ``config.json`` dictionary. Without ``base_model_config_class`` (or with the
        generic ``PretrainedConfig``), the base config's ``model_type`` picks its class, as ``AutoConfig`` does (the
        checkpoint's own code with ``trust_remote_code``, imported with ``hub_kwargs``)."""
        if head_config is None and head_config_class is None:
            raise ValueError("CombinedConfig.from_pretrained needs head_config= or head_config_class=.")
        base_dict, head_config = split_checkpoint_config(config_dict, checkpoint, head_config, head_config_class)
        base_config = base_config_from_dict(base_dict, base_model_config_class, source=config_path(checkpoint),
                                            checkpoint=checkpoint, trust_remote_code=trust_remote_code, **hub_kwargs)
        base_config.name_or_path = checkpoint
        combined = cls(base_model_config=base_config, head_config=head_config)
        combined.name_or_path = checkpoint
        return combined


def _deserialise_parts(base_model_config, head_config, base_model_config_class, head_config_class, kwargs):
    if base_model_config is None:
        raise ValueError("CombinedConfig needs a base_model_config (a transformers config or its dictionary).")
    if head_config is None:
        raise ValueError("CombinedConfig needs a head_config (a HeadConfig or its dictionary).")
    if isinstance(base_model_config, dict):
        base_model_config = base_config_from_dict(base_model_config, base_model_config_class)
    if isinstance(head_config, dict):
        if head_config_class is None:
            raise ValueError("A head_config given as a dictionary needs head_config_class=.")
        head_config = dataclass_from_dict(head_config_class, head_config)
    return base_model_config, head_config
