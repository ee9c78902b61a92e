"""Key renaming, in one place: from the names in a checkpoint to the names in an archit model.

A checkpoint key may be named
  - as in the model (archit checkpoints: ``model._core.*``, ``head.*``);
  - as in a bare base model (``embeddings.*``) or with the architecture prefix (``roberta.embeddings.*``);
  - as in a transformers task model's head (``classifier.*``, ``lm_head.*``), imported when that head computes what
    the archit head computes;
  - with legacy names (``LayerNorm.gamma``/``LayerNorm.beta``).
Buffers that old releases saved but current models do not persist (``embeddings.position_ids``) are ignored.
"""
from dataclasses import dataclass, field
from typing import AbstractSet, Dict, Iterable, List, Mapping, Optional, Set

# Where the parts of an archit model sit, and so the key prefixes of its checkpoints: a model-with-head holds its
# BaseModel as ``model`` and its Head as ``head``; a BaseModel holds the transformers core as ``_core``.
CORE_IN_BASE_MODEL = "_core."
CORE_PATH = "model." + CORE_IN_BASE_MODEL
HEAD_PATH = "head."

_LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


@dataclass(frozen=True)
class KeyNaming:
    """How checkpoint keys name the tensors of the model being loaded."""
    core_path: str
    """Where the transformers core sits in the model, with a trailing dot (``"model._core."``)."""
    core_prefix: str
    """The core's ``base_model_prefix`` (``"roberta"``), which task checkpoints put before base keys."""
    head_path: str
    """Where the head (or heads) sit in the model, with a trailing dot (``"head."``); ``""`` for a base model."""
    head_prefixes: Mapping[str, str] = field(default_factory=dict)
    """Stored head key prefix -> the model's head key prefix (under ``head_path``): a transformers task model's head
    that is imported (``{"classifier.": "dense."}``), or stored heads of another layout (``{"heads.ner.": ""}``)."""


@dataclass
class KeyRenaming:
    """What becomes of each checkpoint key."""
    targets: Dict[str, str] = field(default_factory=dict)   # checkpoint key -> model key
    unexpected: List[str] = field(default_factory=list)     # keys nothing in the model takes
    ignored: List[str] = field(default_factory=list)        # known leftovers (non-persistent buffers, duplicates)


def rename_checkpoint_keys(checkpoint_keys: Iterable[str], model_keys: Set[str], non_persistent: Set[str],
                           naming: KeyNaming) -> KeyRenaming:
    """Map every checkpoint key onto a key of the model, or report it unused (or ignored: a buffer the model does not
    persist, a second name for a tensor already taken)."""
    renaming = KeyRenaming()
    taken: Set[str] = set()
    for key in checkpoint_keys:
        target = model_key_for(key, model_keys, naming)
        if target is None:
            if any(c in non_persistent for c in candidate_names(key, naming)):
                renaming.ignored.append(key)
            else:
                renaming.unexpected.append(key)
        elif target in taken:  # Two names for one tensor (e.g. a tied bias saved twice).
            renaming.ignored.append(key)
        else:
            taken.add(target)
            renaming.targets[key] = target
    return renaming


def model_key_for(name: str, model_keys: AbstractSet[str], naming: KeyNaming) -> Optional[str]:
    """The model key that the checkpoint key ``name`` fills, or ``None``."""
    return next((c for c in candidate_names(name, naming) if c in model_keys), None)


def candidate_names(key: str, naming: KeyNaming) -> List[str]:
    """The model keys a checkpoint key may stand for, most literal first."""
    names = [key, naming.core_path + key]
    if naming.core_prefix and key.startswith(naming.core_prefix + "."):
        names.append(naming.core_path + key[len(naming.core_prefix) + 1:])
    for stored_prefix, model_prefix in naming.head_prefixes.items():
        if key.startswith(stored_prefix):
            names.append(naming.head_path + model_prefix + key[len(stored_prefix):])
    for name in list(names):
        for old, new in _LEGACY_SUFFIXES.items():
            if name.endswith(old):
                names.append(name[: -len(old)] + new)
    return names
