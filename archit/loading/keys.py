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
from typing import Dict, Iterable, List, Mapping, Optional, Set

# Where the parts of an archit model sit, and so the key prefixes of its checkpoints: a model-with-head holds its
# BaseModel as ``model`` and its Head as ``head``; a BaseModel holds the transformers core as ``_core``.
CORE_IN_BASE_MODEL = "_core."
CORE_PATH = "model." + CORE_IN_BASE_MODEL
HEAD_PATH = "head."

_LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


@dataclass
class KeyRenaming:
    """What becomes of each checkpoint key."""
    targets: Dict[str, str] = field(default_factory=dict)   # checkpoint key -> model key
    unexpected: List[str] = field(default_factory=list)     # keys nothing in the model takes
    ignored: List[str] = field(default_factory=list)        # known leftovers (non-persistent buffers, duplicates)


def rename_checkpoint_keys(checkpoint_keys: Iterable[str], model_keys: Set[str], non_persistent: Set[str],
                           core_path: str, core_prefix: str, head_path: str,
                           head_prefixes: Mapping[str, str]) -> KeyRenaming:
    """
    Map every checkpoint key onto a key of the model, or report it unused.

    :param core_path: where the transformers core sits in the model, with a trailing dot (``"model._core."``).
    :param core_prefix: the core's ``base_model_prefix`` (``"roberta"``), which task checkpoints put before base keys.
    :param head_path: where the head sits in the model, with a trailing dot (``"head."``).
    :param head_prefixes: transformers head key prefix -> archit head key prefix, for a task checkpoint whose head is
        imported (empty otherwise).
    """
    renaming = KeyRenaming()
    taken: Set[str] = set()
    for key in checkpoint_keys:
        target = model_key_for(key, model_keys, core_path, core_prefix, head_path, head_prefixes)
        if target is None:
            if any(c in non_persistent for c in candidate_names(key, core_path, core_prefix, head_path, head_prefixes)):
                renaming.ignored.append(key)
            else:
                renaming.unexpected.append(key)
        elif target in taken:  # Two names for one tensor (e.g. a tied bias saved twice).
            renaming.ignored.append(key)
        else:
            taken.add(target)
            renaming.targets[key] = target
    return renaming


def model_key_for(name: str, model_keys: Set[str], core_path: str, core_prefix: str, head_path: str,
                  head_prefixes: Mapping[str, str]) -> Optional[str]:
    """The model key that the checkpoint key ``name`` fills, or ``None`` (arguments as in ``rename_checkpoint_keys``)."""
    return next((c for c in candidate_names(name, core_path, core_prefix, head_path, head_prefixes) if c in model_keys),
                None)


def candidate_names(key: str, core_path: str, core_prefix: str, head_path: str,
                    head_prefixes: Mapping[str, str]) -> List[str]:
    """The model keys a checkpoint key may stand for, most literal first (arguments as in ``rename_checkpoint_keys``)."""
    names = [key, core_path + key]
    if core_prefix and key.startswith(core_prefix + "."):
        names.append(core_path + key[len(core_prefix) + 1:])
    for hf_prefix, archit_prefix in head_prefixes.items():
        if key.startswith(hf_prefix):
            names.append(head_path + archit_prefix + key[len(hf_prefix):])
    for name in list(names):
        for old, new in _LEGACY_SUFFIXES.items():
            if name.endswith(old):
                names.append(name[: -len(old)] + new)
    return names
