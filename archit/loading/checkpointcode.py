"""
Base models whose code ships with the checkpoint: its ``config.json`` has an ``auto_map`` naming classes in the
checkpoint's own files (``{"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel", ...}``), which
transformers loads with ``trust_remote_code=True``.

archit builds such a body from that code through transformers' own dynamic-module machinery (``compat``) when, and only
when, the caller passes ``trust_remote_code=True``. Without it, a checkpoint whose ``model_type`` the installed
transformers does not know is refused before a line of its code is imported; one whose ``model_type`` it knows is built
from transformers' own classes, as ``AutoConfig``/``AutoModel`` do. Reading a ``config.json`` never imports code.

The classes imported with trust are remembered by config class (``code_origin``): where their code came from, and the
base model class the checkpoint's ``AutoModel`` entry names, which ``AutoBaseModel`` builds for configs of that class.
"""
import logging
import os
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Type

from transformers import CONFIG_MAPPING, PretrainedConfig

from .. import _compat as compat

logger = logging.getLogger(__name__)

__all__ = ["CodeOrigin", "code_auto_map", "code_files", "code_origin", "config_class_of_code", "core_class_of_code",
           "task_class_of_code", "missing_code_hint", "save_code_of"]

CONFIG_ENTRY = "AutoConfig"
CORE_ENTRY = "AutoModel"


@dataclass(frozen=True)
class CodeOrigin:
    """Where the code of a trusted config class came from, and the base model class its ``AutoModel`` entry names."""
    checkpoint: str
    hub: Dict[str, Any] = field(default_factory=dict)
    core_class: Optional[Type[Any]] = None


_TRUSTED: "weakref.WeakKeyDictionary[type, CodeOrigin]" = weakref.WeakKeyDictionary()


def code_auto_map(config: Any) -> Dict[str, Any]:
    """The ``auto_map`` of a config or config dictionary (``{}`` when it has none)."""
    auto_map = config.get("auto_map") if isinstance(config, dict) else getattr(config, "auto_map", None)
    return dict(auto_map) if isinstance(auto_map, dict) else {}


def code_files(config: Any) -> List[str]:
    """The code files the ``auto_map`` of a config or config dictionary names (``configuration_x.py``, ...); entries
    naming code in another repository (``other/repo--modeling_x.XModel``) as ``other/repo:modeling_x.py``."""
    files = set()
    for references in code_auto_map(config).values():
        for reference in references if isinstance(references, (list, tuple)) else [references]:
            if isinstance(reference, str) and "." in reference:
                repository, _, module = reference.rpartition("--")
                files.add(f"{repository + ':' if repository else ''}{module.rsplit('.', 1)[0]}.py")
    return sorted(files)


def config_class_of_code(config_dict: Dict[str, Any], checkpoint: str, trust_remote_code: bool = False,
                         **hub_kwargs: Any) -> Optional[Type[Any]]:
    """
    The config class of the code that ships with the checkpoint, when its ``config.json`` (``config_dict``) names one
    and the caller trusts it (``trust_remote_code``); its ``AutoModel`` class is imported too. ``None`` when the
    checkpoint ships no config code, or when transformers' own class for its ``model_type`` serves (not trusted).
    Raises ``ValueError`` when the checkpoint needs its code and the caller did not trust it: nothing is imported then.
    """
    auto_map = code_auto_map(config_dict)
    if CONFIG_ENTRY not in auto_map:
        return None
    model_type = config_dict.get("model_type")
    has_local_code = model_type in CONFIG_MAPPING
    try:
        trusted = compat.trusts_checkpoint_code(trust_remote_code, checkpoint, has_local_code)
    except ValueError as error:
        raise ValueError(_refusal(config_dict)) from error
    if not trusted:
        logger.info("Checkpoint '%s' ships its own code (%s), which is not used without trust_remote_code=True: "
                    "transformers' own classes for model_type '%s' are.", checkpoint,
                    ", ".join(code_files(config_dict)), model_type)
        return None
    config_class = compat.checkpoint_code_class(auto_map[CONFIG_ENTRY], checkpoint, CONFIG_ENTRY, **hub_kwargs)
    core_class = None
    if CORE_ENTRY in auto_map:
        core_class = compat.as_auto_model_class(
            compat.checkpoint_code_class(auto_map[CORE_ENTRY], checkpoint, CORE_ENTRY, **hub_kwargs))
    _TRUSTED[config_class] = CodeOrigin(checkpoint, dict(hub_kwargs), core_class)
    logger.info("Checkpoint '%s': built from its own code (trust_remote_code=True): %s%s.", checkpoint,
                config_class.__name__, f", {core_class.__name__}" if core_class is not None else "")
    return config_class


def code_origin(config: PretrainedConfig) -> Optional[CodeOrigin]:
    """Where the code of ``config``'s class came from, when archit imported it with trust; else ``None``."""
    return _TRUSTED.get(type(config))


def core_class_of_code(config: PretrainedConfig) -> Optional[Type[Any]]:
    """The base model class (``AutoModel`` entry) of the trusted code ``config``'s class comes from; else ``None``."""
    origin = code_origin(config)
    return origin.core_class if origin is not None else None


def task_class_of_code(config: PretrainedConfig, auto_class: str) -> Optional[Type[Any]]:
    """The class the trusted code of ``config``'s class names for ``auto_class`` (``"AutoModelForTokenClassification"``,
    ...), imported from where that code came from; ``None`` when the code names none or ``config`` is not of it."""
    origin = code_origin(config)
    reference = code_auto_map(config).get(auto_class)
    if origin is None or not isinstance(reference, str):
        return None
    return compat.as_auto_model_class(
        compat.checkpoint_code_class(reference, origin.checkpoint, auto_class, **origin.hub))


def missing_code_hint(config: PretrainedConfig, auto_class: str) -> str:
    """Why no ``auto_class`` model of checkpoint code can be built for ``config``, as the end of an error message
    (``""`` when ``config`` has nothing to do with checkpoint code)."""
    auto_map = code_auto_map(config)
    if not auto_map:
        return ""
    listing = ", ".join(sorted(auto_map))
    if auto_class not in auto_map:
        return f" The checkpoint's own code names no {auto_class} class (its auto_map lists {listing})."
    if code_origin(config) is None:
        return (f" Its class ships with the checkpoint ({auto_class}: {auto_map[auto_class]}): load the checkpoint "
                f"with from_pretrained(..., trust_remote_code=True), or register the class with transformers' "
                f"{auto_class}.register({type(config).__name__}, <class>).")
    return ""


def save_code_of(config: PretrainedConfig, core: Any, directory: str) -> List[str]:
    """
    Copy the code files of a base model built from checkpoint code (its config's and core's classes, and what they
    import relatively) into the folder of a checkpoint being saved, as transformers' ``save_pretrained`` does, so that
    the saved checkpoint loads with ``trust_remote_code=True`` wherever it is copied. Its config keeps the ``auto_map``
    it was loaded with; entries for these two classes are added where it lacks them. The copied paths.
    """
    copied: List[str] = []
    entries = {CONFIG_ENTRY: type(config), CORE_ENTRY: type(core)}
    for entry, cls in entries.items():
        if not compat.is_checkpoint_code(cls):
            continue
        copied += compat.save_checkpoint_code(cls, directory)
        auto_map = code_auto_map(config)
        if entry not in auto_map:
            auto_map[entry] = f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"
            config.auto_map = auto_map
    if copied:
        logger.info("Copied the checkpoint code of %s into '%s': %s.", type(core).__name__, directory,
                    ", ".join(sorted({os.path.basename(path) for path in copied})))
    return copied


def _refusal(config_dict: Dict[str, Any]) -> str:
    auto_map = code_auto_map(config_dict)
    classes = ", ".join(f"{entry}: {auto_map[entry]}" for entry in (CONFIG_ENTRY, CORE_ENTRY) if entry in auto_map)
    return (f"model_type '{config_dict.get('model_type')}' is not in transformers {compat.TRANSFORMERS_VERSION}: the "
            f"checkpoint ships its own code for it ({', '.join(code_files(config_dict))}; {classes}). Building the "
            f"model imports and runs that code, so archit does it only when asked: pass trust_remote_code=True if you "
            f"trust the checkpoint (read its code first). None of it has been imported.")
