"""
The three configs of ArchIt's three main classes: ``BaseModelConfig`` (a standard view of any transformers config),
``HeadConfig`` (a dataclass per head) and ``CombinedConfig`` (the transformers config of a model-with-head, holding the
base model's transformers config and the head config).
"""
import json
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, is_dataclass
from enum import Enum
from typing import Any, Dict, Generic, List, Optional, Protocol, Tuple, Type, TypeVar, Union

from transformers import PretrainedConfig

from .. import __version__ as archit_version
from .. import _compat as compat
from ..loading.configs import (
    base_config_from_dict,
    config_path,
    dataclass_from_dict,
    named_class,
    split_checkpoint_config,
)
from ..loading.files import HUB_KWARGS, read_config_dict

__all__ = ["BaseModelConfig", "HeadConfig", "CombinedConfig", "PC", "HC"]  # As published; the other public names too:
# Dictable, RecursiveSerialisable, RecursiveAccessible, RecursivePretrainedConfig (and PretrainedConfig, re-exported).


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


class Dictable(Protocol):
    """Anything with a ``to_dict()`` that turns it into a dictionary; by duck typing, transformers' ``PretrainedConfig``
    too."""

    def to_dict(self) -> dict:
        ...


class RecursiveSerialisable(Dictable):
    """
    Serialises to a dictionary (``to_dict``), turning fields that are ``Dictable`` (configs, other head configs),
    dataclasses or enums into dictionaries and plain values too. What is serialised is the hook
    ``_fields_to_dictables()``, which subclasses override to add, drop or rewrite fields (LaMoTO's hyperparameters do).
    """

    def _fields_to_dictables(self) -> Dict[str, Any]:
        """This object's information as a dictionary whose values may still be ``Dictable``: by default its fields.
        A new dictionary each time, so that an override may change it freely (the published ArchIt returned the
        object's own ``__dict__``, so that such an override changed the object itself)."""
        return dict(vars(self))

    def to_dict(self) -> Dict[str, Any]:
        return {k: _to_serialisable(v) for k, v in self._fields_to_dictables().items()}


def _to_serialisable(value: Any) -> Any:
    if hasattr(value, "to_dict") and not isinstance(value, type):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _to_serialisable(v) for k, v in asdict(value).items()}
    if isinstance(value, Enum):
        return value.value
    return value


class RecursiveAccessible(ABC):
    """An attribute this object lacks is looked up in the objects held by its ``_fallback_fields()``, in order."""

    @classmethod
    @abstractmethod
    def _fallback_fields(cls) -> List[str]:
        """Names of fields holding objects to look attributes up in, in order."""

    def __getattr__(self, item: str) -> Any:
        if item.startswith("__"):  # Protocols of copy, pickle, ...: never another object's.
            raise AttributeError(item)
        try:
            return super().__getattr__(item)  # type: ignore[misc]
        except AttributeError:
            pass
        namespace = self.__dict__  # Absent fields (during copy or unpickling) are skipped: no recursion.
        for fallback in _fallbacks(type(self)):
            if namespace.get(fallback) is None:
                continue
            try:
                return getattr(namespace[fallback], item)
            except AttributeError:
                pass
        raise AttributeError(item)


_FALLBACKS: Dict[type, Tuple[str, ...]] = {}


def _fallbacks(cls: Type[Any]) -> Tuple[str, ...]:
    """``cls._fallback_fields()``, asked once per class (attribute access is frequent)."""
    if cls not in _FALLBACKS:
        _FALLBACKS[cls] = tuple(cls._fallback_fields() or ())
    return _FALLBACKS[cls]


class RecursivePretrainedConfig(PretrainedConfig, RecursiveSerialisable, RecursiveAccessible, ABC):
    """
    A transformers config some of whose fields are configs themselves (``_fallback_fields()``, e.g. the base model's):
    attribute access falls back to them, for reading and for writing, also for the fields transformers puts on every
    config (``pad_token_id``, ``tie_word_embeddings``, ...: a data field of a fallback config shadows this config's own
    copy of the default, as the published ArchIt's deletion of those copies did; transformers 5's configs are
    dataclasses, which cannot lose a field), and it serialises recursively (``to_dict``: the fields
    ``_serialised_fields()`` names).

    Hooks for subclasses, as in the published ArchIt: ``_fallback_fields``, ``_serialised_fields``,
    ``_constructor_runtime_arguments`` (constructor arguments that ``from_pretrained`` takes from its keyword arguments
    rather than from the JSON), ``_syncSubconfigs`` (called by subclasses where sub-configs share values).
    """

    has_no_defaults_at_init = True  # transformers must not build this class without arguments to find its defaults.

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._deleteTopLevelFields()

    def __getattribute__(self, name: str) -> Any:
        if name[0] != "_":
            holder = object.__getattribute__(self, "_holder_of")(name)
            if holder is not None:
                return getattr(holder, name)
        return super().__getattribute__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        holder = self._holder_of(name) if name[0] != "_" else None
        if holder is not None:
            setattr(holder, name, value)
        else:
            super().__setattr__(name, value)

    def _holder_of(self, name: str) -> Optional[Any]:
        """The fallback config that holds the field ``name`` (in its own ``__dict__``, or as a property of its class,
        as transformers 5 keeps ``output_attentions``), if any."""
        namespace = object.__getattribute__(self, "__dict__")
        for fallback in _fallbacks(type(self)):
            holder = namespace.get(fallback)
            if holder is not None and name != fallback and (
                    name in vars(holder) or isinstance(getattr(type(holder), name, None), property)):
                return holder
        return None

    # Hooks

    @abstractmethod
    def _syncSubconfigs(self) -> None:
        """Synchronise values that several sub-configs hold. Subclasses call it where they need it."""

    @classmethod
    @abstractmethod
    def _serialised_fields(cls) -> List[str]:
        """Names of the fields that ``to_dict`` keeps."""

    @classmethod
    @abstractmethod
    def _constructor_runtime_arguments(cls) -> List[str]:
        """Constructor arguments that may come from the caller of ``from_pretrained`` (its keyword arguments) rather
        than from the checkpoint's JSON; ``[]`` when the JSON holds everything."""

    def _deleteTopLevelFields(self) -> None:
        """The published ArchIt deleted the fields transformers puts on every config here, so that reads fell back to the
        sub-configs; reads and writes of the fields a fallback config holds go to it anyway (``__getattribute__``,
        ``__setattr__``), so nothing needs deleting. Kept for subclasses that override or call it."""

    def _fields_to_dictables(self) -> Dict[str, Any]:
        fields_as_dict = PretrainedConfig.to_dict(self)
        keep = [*self._serialised_fields(), "torch_dtype", "transformers_version"]
        return {k: v for k, v in fields_as_dict.items() if k in keep}

    def to_dict(self) -> Dict[str, Any]:
        return RecursiveSerialisable.to_dict(self)

    def to_diff_dict(self) -> Dict[str, Any]:
        return self.to_dict()

    def to_json_string(self, use_diff: bool = True) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"

    def to_json_file(self, json_file_path: Union[str, os.PathLike], use_diff: bool = True) -> None:
        with open(json_file_path, "w", encoding="utf-8") as handle:
            handle.write(self.to_json_string())

    def _get_non_default_generation_parameters(self) -> Dict[str, Any]:
        return {}

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path: Union[str, os.PathLike],
                        **kwargs: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """transformers' ``get_config_dict``, with the ``_constructor_runtime_arguments()`` found among the keyword
        arguments moved into the dictionary, so that the constructor receives them."""
        config_dict, remaining = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        for key in cls._constructor_runtime_arguments():
            if key in remaining:
                config_dict[key] = remaining.pop(key)
        return config_dict, remaining


class HeadConfig(RecursiveSerialisable):
    """Base class of head configs. Subclasses are dataclasses; their fields are serialised under ``head_config``."""


PC = TypeVar("PC", bound=PretrainedConfig)
HC = TypeVar("HC", bound=HeadConfig)

BOOKKEEPING_KEYS = ("transformers_version", "architectures", "archit_version", "_name_or_path", "name_or_path", "task")
"""Keys of a stored ``config.json`` that record where it came from, not settings: a config read from it sets none of
them (``CombinedConfig`` and ``MultiHeadConfig``), and its save writes them anew."""
_IMPLEMENTATION_FIELDS = ("_attn_implementation", "_experts_implementation")
"""What transformers chose to run the body with (set on the body's config): a model-with-head reports the body's."""


def _body_implementation(name: str) -> property:
    """The property ``name`` of ``CombinedConfig`` (one of ``_IMPLEMENTATION_FIELDS``): read from and written to the base
    config (``_implementation``, ``_set_implementation``)."""
    return property(lambda config: _implementation(config, name),
                    lambda config, value: _set_implementation(config, name, value))


class CombinedConfig(RecursivePretrainedConfig, Generic[PC, HC]):
    """
    The config of a model-with-head: the base model's transformers config and the head's config.

    Serialised as ``{"base_model_config": {...}, "head_config": {...}, "transformers_version": ...}`` (the format of
    the published ArchIt). Attribute access falls back to the base model's config: ``combined.hidden_size`` is
    ``combined.base_model_config.hidden_size``, and so are the fields transformers puts on every config (``pad_token_id``,
    ``tie_word_embeddings``, ...), for reading and for writing; so is what transformers chose to run the body with
    (``_attn_implementation``, and on 5.x ``_experts_implementation``; ``None`` where the release makes no such choice).

    Built from objects (``CombinedConfig(base_model_config=RobertaConfig(...), head_config=...)``), from dictionaries
    with their classes (``base_model_config_class=``, ``head_config_class=``: a JSON unpacked), or, as in the published
    ArchIt, from a transformers config's fields unpacked as keyword arguments with ``base_model_config_class=`` and a
    ``head_config``. Only ``from_pretrained`` gives a config whose ``head_config`` is ``None``: that of a transformers
    checkpoint read without a head config.
    """

    model_type = "archit"

    def __init__(self, base_model_config: Union[dict, PC, None] = None, head_config: Union[dict, HC, None] = None,
                 base_model_config_class: Optional[Type[PC]] = None, head_config_class: Optional[Type[HC]] = None,
                 **kwargs: Any):
        for key in BOOKKEEPING_KEYS:
            kwargs.pop(key, None)
        if base_model_config is None and base_model_config_class is not None and head_config is not None:
            base_model_config, kwargs = base_model_config_class(**kwargs), {}  # A transformers config unpacked.
        base_model_config, head_config = _deserialise_parts(base_model_config, head_config,
                                                            base_model_config_class, head_config_class, kwargs)
        super().__init__(**kwargs)  # Before the parts exist, so that its defaults don't overwrite the base config's.
        object.__setattr__(self, "base_model_config", base_model_config)
        object.__setattr__(self, "head_config", head_config)

    # What the body runs with (_IMPLEMENTATION_FIELDS) is the base config's (the body's own); before the base config
    # exists (during transformers' __init__, which sets it), this config's own.
    _attn_implementation = _body_implementation("_attn_implementation")
    _experts_implementation = _body_implementation("_experts_implementation")

    @property
    def keys_to_ignore_at_inference(self) -> List[str]:
        """What transformers' ``Trainer`` leaves out of predictions: the base config's (its cache) and the body's whole
        output, which a model-with-head returns next to its hidden states when they are asked for."""
        base = self.__dict__.get("base_model_config")
        return [*getattr(base, "keys_to_ignore_at_inference", []), "base_model_output"]

    # Hooks of the published ArchIt

    @classmethod
    def _fallback_fields(cls) -> List[str]:
        return ["base_model_config"]

    @classmethod
    def _serialised_fields(cls) -> List[str]:
        return ["base_model_config", "head_config"]

    @classmethod
    def _constructor_runtime_arguments(cls) -> List[str]:
        return ["head_config", "base_model_config_class", "head_config_class"]

    def _syncSubconfigs(self) -> None:
        pass

    def _fields_to_dictables(self) -> Dict[str, Any]:
        stored: Dict[str, Any] = {
            "base_model_config": compat.stored_config_dict(self.base_model_config.to_dict()),
            "head_config": self.head_config,
        }
        for name in self._serialised_fields():  # Fields a subclass adds.
            if name not in stored:
                stored[name] = self.__dict__.get(name)
        stored.update({"transformers_version": str(compat.TRANSFORMERS_VERSION), "archit_version": archit_version})
        if self.__dict__.get("task"):  # The task class (module:name) of the model this config was saved with.
            stored["task"] = self.__dict__["task"]
        return stored

    def __repr__(self) -> str:
        return f"{self.__class__.__name__} {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CombinedConfig) and self.to_dict() == other.to_dict()

    __hash__ = object.__hash__

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], head_config: Optional[HC] = None,
                        base_model_config_class: Optional[Type[PC]] = None,
                        head_config_class: Optional[Type[HC]] = None,
                        **kwargs: Any) -> Union["CombinedConfig", Tuple["CombinedConfig", Dict[str, Any]]]:
        """
        Read a checkpoint's ``config.json``: an archit checkpoint (nested base model and head configs) or a plain
        transformers checkpoint plus ``head_config``. A ``head_config`` given here wins over the checkpoint's; without
        one (nor ``head_config_class``) the stored head config is read as the config class of the task the checkpoint
        names (its ``task``, or the published ArchIt's ``architectures``), and a plain transformers checkpoint gives
        its base config alone (``head_config`` ``None``): as transformers' config classes, this class reads every
        checkpoint its models load from, which tools rely on (peft, saving an adapter, reads the ``vocab_size`` of the
        checkpoint the model came from through ``model.config.__class__.from_pretrained``). The base config is read as
        ``base_model_config_class``, or, when that is omitted, as the class of its ``model_type`` (the config class of
        the checkpoint's own code with ``trust_remote_code=True``, as in ``from_pretrained``).

        Keyword arguments as transformers' ``PretrainedConfig.from_pretrained``: hub arguments (``cache_dir``,
        ``revision``, ``token``, ...), fields of the config to set, ``return_unused_kwargs=True`` (answers ``(config,
        the keyword arguments not used)``); transformers' internal ones (``_from_auto``, ``_commit_hash``, ...) are
        accepted and ignored. Without ``return_unused_kwargs``, a keyword argument that is neither is a ``TypeError``.
        """
        return_unused = bool(kwargs.pop("return_unused_kwargs", False))
        trust_remote_code = bool(kwargs.pop("trust_remote_code", False))
        kwargs.pop("resume_download", None)  # Deprecated by huggingface_hub (downloads always resume).
        if kwargs.pop("gguf_file", None) is not None:
            raise NotImplementedError("CombinedConfig.from_pretrained: archit reads no GGUF files.")
        if "use_auth_token" in kwargs:
            kwargs.setdefault("token", kwargs.pop("use_auth_token"))
        hub = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}
        runtime = {k: kwargs.pop(k) for k in cls._constructor_runtime_arguments() if k in kwargs}
        settings = {k: v for k, v in kwargs.items() if not k.startswith("_")}  # transformers' internal keywords: unused
        checkpoint = str(pretrained_model_name_or_path)
        config_dict = read_config_dict(checkpoint, **hub)
        config = cls.from_checkpoint_dict(config_dict, checkpoint, head_config, base_model_config_class,
                                          head_config_class, trust_remote_code, runtime=runtime, **hub)
        unused = {}
        for key, value in settings.items():
            if hasattr(config, key):
                setattr(config, key, value)
            else:
                unused[key] = value
        if return_unused:
            return config, unused
        if unused:
            raise TypeError(f"CombinedConfig.from_pretrained() got unexpected keyword arguments {sorted(unused)}: "
                            f"neither hub arguments nor fields of {type(config.base_model_config).__name__}.")
        return config

    @classmethod
    def from_checkpoint_dict(cls, config_dict: Dict[str, Any], checkpoint: str, head_config: Optional[HC],
                             base_model_config_class: Optional[Type[PC]],
                             head_config_class: Optional[Type[HC]], trust_remote_code: bool = False,
                             runtime: Optional[Dict[str, Any]] = None, **hub_kwargs: Any) -> "CombinedConfig":
        """The config of a checkpoint's ``config.json`` dictionary. Without ``base_model_config_class`` (or with the
        generic ``PretrainedConfig``), the base config's ``model_type`` picks its class, as ``AutoConfig`` does (the
        checkpoint's own code with ``trust_remote_code``, imported with ``hub_kwargs``). Without ``head_config`` and
        ``head_config_class``: an archit checkpoint's head config is read as its task's, and a transformers checkpoint's
        config is the base config alone (``head_config`` ``None``). ``runtime``: further constructor arguments (a
        subclass's ``_constructor_runtime_arguments``)."""
        if head_config is None and head_config_class is None and "base_model_config" in config_dict:
            head_config_class = _stored_head_config_class(config_dict, checkpoint)
        base_dict, head_config = split_checkpoint_config(config_dict, checkpoint, head_config, head_config_class)
        base_config = base_config_from_dict(base_dict, base_model_config_class, source=config_path(checkpoint),
                                            checkpoint=checkpoint, trust_remote_code=trust_remote_code, **hub_kwargs)
        base_config.name_or_path = checkpoint
        known = head_config is not None  # Else a transformers checkpoint, no head config given: the body's alone.
        stand_in: Any = HeadConfig()  # For the constructor, which wants a head config; replaced by None below.
        combined = cls(base_model_config=base_config, head_config=head_config if known else stand_in,
                       **(runtime or {}))
        if not known:
            object.__setattr__(combined, "head_config", None)
        combined.name_or_path = checkpoint
        return combined


def _implementation(config: CombinedConfig, name: str) -> Any:
    base = config.__dict__.get("base_model_config")
    if base is not None:
        return getattr(base, name, None)
    return config.__dict__.get(f"{name}_internal")


def _set_implementation(config: CombinedConfig, name: str, value: Any) -> None:
    base = config.__dict__.get("base_model_config")
    if base is not None:
        setattr(base, name, value)
    else:
        config.__dict__[f"{name}_internal"] = value


def _stored_head_config_class(config_dict: Dict[str, Any], checkpoint: str) -> type:
    """The head config class of the task an archit checkpoint names: its ``task`` (this version writes it), else its
    ``architectures`` (the published ArchIt wrote the task class's name there). ``ValueError`` when it names none."""
    names = [config_dict.get("task"), *(config_dict.get("architectures") or [])] \
        if "base_model_config" in config_dict else []
    for name in names:
        if not isinstance(name, str):
            continue
        try:
            task = named_class(name, "archit.instantiation.tasks")
        except ValueError:
            continue
        if isinstance(task, type) and hasattr(task, "headClass"):
            return task.headClass().configClass()
    raise ValueError(f"Checkpoint '{checkpoint}' is not an archit checkpoint naming its task (no task, no archit task "
                     f"in its architectures), so its head config class is unknown: pass head_config= or "
                     f"head_config_class=.")


def _deserialise_parts(base_model_config, head_config, base_model_config_class, head_config_class, kwargs):
    if base_model_config is None:
        raise ValueError("CombinedConfig needs a base_model_config (a transformers config or its dictionary), or a "
                         "transformers config's fields as keyword arguments with base_model_config_class= and "
                         "head_config=.")
    if head_config is None:
        raise ValueError("CombinedConfig needs a head_config (a HeadConfig or its dictionary).")
    if isinstance(base_model_config, dict):
        base_model_config = base_config_from_dict(base_model_config, base_model_config_class)
    if isinstance(head_config, dict):
        if head_config_class is None:
            raise ValueError("A head_config given as a dictionary needs head_config_class=.")
        head_config = dataclass_from_dict(head_config_class, head_config)
    return base_model_config, head_config
