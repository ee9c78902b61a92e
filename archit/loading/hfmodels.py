"""
To and from transformers' own task models (``RobertaForTokenClassification``, ``GPT2LMHeadModel``, ...):
  - which head weights of a transformers task checkpoint an archit task imports, and the head config that reproduces
    that head when the user gives none;
  - ``ModelWithHead.toHuggingFace``: the equivalent transformers model holding the same weights.
Both directions read the same key table (``BaseModel.hfHeadKeys``), the same key renaming (``keys.py``) and what the
task and head classes declare about their transformers equivalents (``declared``: the transformers config fields a head
config decides, a task's ``problem_type``), so that a subclass exports and imports as its parent does.
"""
import copy
import dataclasses
import inspect
import logging
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple, Type

import torch
import transformers
from accelerate import init_empty_weights
from torch import Tensor, nn
from transformers import PreTrainedModel

from .. import _compat as compat
from .checkpointcode import code_origin, missing_code_hint, task_class_of_code
from .equivalents import HF_AUTO_CLASSES, OUTPUT_EMBEDDINGS
from .keys import CORE_PATH, HEAD_PATH, KeyNaming, candidate_names

logger = logging.getLogger(__name__)


def checkpoint_suffixes(base_model_class: Type[Any], config_dict: Dict[str, Any]) -> List[str]:
    """The archit head suffixes (``ForTokenClassification``, ...) of the transformers task architectures a checkpoint's
    ``config.json`` lists, family aliases (GPT-2's ``LMHeadModel``) resolved."""
    aliases = base_model_class.hfArchitectureSuffixes()
    suffixes = []
    for architecture in config_dict.get("architectures") or []:
        suffixes += [suffix for suffix in HF_AUTO_CLASSES if architecture.endswith(suffix)]
        suffixes += [meaning for alias, meaning in aliases.items() if architecture.endswith(alias)]
    return suffixes


def equivalent_suffix(head_class: Type[Any], head_config: Any) -> str:
    """``head_class.hfEquivalentSuffix(head_config)``: the transformers ``XForY`` suffix whose head computes what this
    head with this config computes (``"/"``: none). An override written for the published ArchIt takes no head config,
    and is called without one."""
    method = head_class.hfEquivalentSuffix
    try:
        inspect.signature(method).bind(head_config)
    except TypeError:
        return method()
    return method(head_config)


def imported_head(cls: Type[Any], base_model_class: Type[Any], base_config: Any, config_dict: Dict[str, Any],
                  head_config: Any) -> Tuple[Dict[str, str], Optional[PreTrainedModel]]:
    """
    When the checkpoint is a transformers task model whose head computes what the head of ``cls`` with ``head_config``
    computes: the head key prefixes to import (transformers prefix -> archit head prefix) and that transformers task
    model, built empty (meta device), whose key space and conversion rules the checkpoint is read in. ``({}, None)``
    otherwise.
    """
    suffix = equivalent_suffix(cls.headClass(), head_config)
    if suffix not in checkpoint_suffixes(base_model_class, config_dict):
        return {}, None
    head_keys = base_model_class.hfHeadKeys(base_config).get(suffix, {})
    if not head_keys:
        return {}, None
    hf_model = empty_task_model(suffix, base_config)
    return resolve_head_keys(head_keys, hf_model), hf_model


def empty_task_model(suffix: str, config: Any) -> Optional[PreTrainedModel]:
    """transformers' ``XForY`` model of ``config``'s family for the head ``suffix``, on the meta device; ``None`` when
    the installed transformers has no such class for the family. For a config of checkpoint code loaded with
    ``trust_remote_code=True``, the class that code names for the Auto class (``None`` when it names none); checkpoint
    code that was not trusted is never imported here (transformers is told ``trust_remote_code=False``, so it neither
    runs the code nor asks on the terminal)."""
    auto_name = HF_AUTO_CLASSES[suffix]
    if code_origin(config) is not None:
        task_class = task_class_of_code(config, auto_name)
        if task_class is None:
            return None
        with init_empty_weights(), compat.no_init_weights(), compat.zero3_state():
            return task_class(copy.deepcopy(config))
    try:
        # Only its key space is read: on the meta device, never partitioned by ZeRO-3 (compat.zero3_state).
        with init_empty_weights(), compat.no_init_weights(), compat.zero3_state():
            return getattr(transformers, auto_name).from_config(copy.deepcopy(config), trust_remote_code=False)
    except ValueError:
        return None


def resolve_head_keys(head_keys: Dict[str, str], hf_model: Optional[PreTrainedModel]) -> Dict[str, str]:
    """``head_keys`` with ``OUTPUT_EMBEDDINGS`` replaced by the prefix of ``hf_model``'s output embedding module (left
    out when there is no model or no such module)."""
    resolved = {k: v for k, v in head_keys.items() if k != OUTPUT_EMBEDDINGS}
    if OUTPUT_EMBEDDINGS in head_keys and hf_model is not None:
        output = hf_model.get_output_embeddings()
        name = next((n for n, module in hf_model.named_modules() if module is output), None) if output is not None else None
        if name:
            resolved[name + "."] = head_keys[OUTPUT_EMBEDDINGS]
    return resolved


def transformers_head_config(cls: Type[Any], base_model_class: Type[Any], config_dict: Dict[str, Any]) -> Optional[Any]:
    """
    For a transformers task checkpoint loaded without a head config: the head config under which the head of ``cls``
    computes what the checkpoint's head computes, or ``None`` when the checkpoint has no such head. Its fields are what
    the head class declares: ``hf_config_fields`` read from the checkpoint's config (``num_labels`` from ``id2label``,
    ``tie_weights`` from ``tie_word_embeddings``) and ``hf_equivalent_config`` (first-token pooling).
    """
    suffixes = checkpoint_suffixes(base_model_class, config_dict)
    if not suffixes:
        return None
    head_class = cls.headClass()
    config_class = head_class.configClass()
    fields = {f.name for f in dataclasses.fields(config_class)}
    values = {**declared(head_class, "hf_equivalent_config"),
              **{head_field: transformers_field(config_dict, hf_field)
                 for head_field, hf_field in declared(head_class, "hf_config_fields").items()}}
    try:
        head_config = config_class(**{k: v for k, v in values.items() if k in fields})
    except TypeError:
        return None  # The head config has required fields transformers' config says nothing about.
    suffix = equivalent_suffix(head_class, head_config)
    family = SimpleNamespace(model_type=config_dict.get("model_type"))
    if suffix not in suffixes or not base_model_class.hfHeadKeys(family).get(suffix):
        return None
    logger.info("No head config given: using %s, the head of the checkpoint's %s.", head_config,
                config_dict.get("architectures"))
    return head_config


# What a task or head class that declares nothing about its transformers equivalent is taken to declare. What each
# means: the docstrings of archit.instantiation.heads (heads) and archit.instantiation.tasks (tasks).
_UNDECLARED: Dict[str, Any] = {
    "hf_config_fields": {},  # head config field -> transformers config field meaning the same
    "hf_equivalent_config": {},  # head config values transformers' equivalent head always has
    "hf_problem_type": None,  # transformers' problem_type of the task's loss
    "purpose": None,  # what the head or task does, in words
}


def declared(cls: Type[Any], fact: str) -> Any:
    """What a task or head class (or a parent of it) declares as ``fact`` (one of ``_UNDECLARED``), or what a class
    declaring nothing is taken to declare."""
    return getattr(cls, fact, _UNDECLARED[fact])


# The value a transformers config dictionary holds for a field, where transformers does not write it out.
_TRANSFORMERS_DEFAULTS = {"num_labels": 2, "tie_word_embeddings": True}


def transformers_field(config_dict: Dict[str, Any], field: str) -> Any:
    """A field of a transformers ``config.json``, as transformers' config would answer it: ``num_labels`` is the number
    of ``id2label`` entries; a field left out has transformers' default."""
    if field == "num_labels" and config_dict.get("id2label"):
        return len(config_dict["id2label"])
    return config_dict.get(field, _TRANSFORMERS_DEFAULTS.get(field))


def to_hugging_face(model: nn.Module, share_weights: bool = False, verify: bool = True) -> PreTrainedModel:
    """``ModelWithHead.toHuggingFace``; see there."""
    head_config = model.config.head_config
    suffix = equivalent_suffix(model.headClass(), head_config)
    name = f"{type(model).__name__} with a {type(model.head).__name__}"
    if suffix == "/":
        raise NotImplementedError(f"{name} has no transformers equivalent: no transformers task class computes what "
                                  f"this head computes.")
    base = model.model
    head_keys = type(base).hfHeadKeys(base.config).get(suffix)
    family = getattr(base.config, "model_type", "?")
    if not head_keys:
        raise NotImplementedError(f"{name} has no transformers equivalent for model_type '{family}': archit does not "
                                  f"know where its {suffix} class keeps this head.")
    config = copy.deepcopy(base.config)
    _configure(config, model)
    hf_model = empty_task_model(suffix, config)
    if hf_model is None:
        raise NotImplementedError(f"{name} has no transformers equivalent: transformers has no {suffix} class for "
                                  f"model_type '{family}'." + missing_code_hint(config, HF_AUTO_CLASSES[suffix]))
    head_keys = resolve_head_keys(head_keys, hf_model)

    archit_state = model.state_dict(keep_vars=True)
    hf_state = hf_model.state_dict(keep_vars=True)
    values: Dict[str, Tensor] = {}
    copies: Dict[int, Tensor] = {}  # One copy per tensor of the transformers model (tied keys share it).
    exported, missing = set(), []
    naming = KeyNaming(CORE_PATH, hf_model.base_model_prefix, HEAD_PATH, head_keys)
    for key, slot in hf_state.items():
        source = next((c for c in candidate_names(key, naming) if c in archit_state), None)
        if source is None:
            missing.append(key)
            continue
        tensor = archit_state[source].detach()
        exported.add(id(archit_state[source]))
        values[key] = copies.setdefault(id(slot), tensor if share_weights else tensor.clone())
    surplus = sorted(k for k, t in archit_state.items() if id(t) not in exported
                     and (k.startswith(CORE_PATH) or k.startswith(HEAD_PATH)))
    if surplus:
        raise NotImplementedError(f"{name} is not equivalent to transformers' {type(hf_model).__name__}, which has no "
                                  f"place for {surplus}.")
    hf_model.load_state_dict(values, strict=False, assign=True)
    hf_model.tie_weights()
    still_empty = [k for k, t in hf_model.state_dict(keep_vars=True).items() if t.device.type == "meta"]
    if still_empty:
        raise NotImplementedError(f"{name} is not equivalent to transformers' {type(hf_model).__name__}: archit has no "
                                  f"weights for {still_empty} (unmatched: {missing}).")
    device = next(model.parameters()).device
    hf_model.to(device)
    hf_model.train(model.training)
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and getattr(hf_model, "generation_config", None) is not None:
        hf_model.generation_config = copy.deepcopy(generation_config)  # It generates as this model does.
    if verify:
        _verify_same_logits(model, hf_model, name)
    return hf_model


def hf_logits(output: Any) -> Tensor:
    """The logits of a transformers task model's output in archit's layout (QA: start and end stacked, B x L x 2)."""
    if getattr(output, "logits", None) is None and getattr(output, "start_logits", None) is not None:
        return torch.stack([output.start_logits, output.end_logits], dim=-1)
    return output.logits


def _configure(config: Any, model: nn.Module) -> None:
    """The transformers config fields that the task and its head config decide: the head class's ``hf_config_fields``
    (a head config's ``num_labels`` of 0 says nothing), the task's ``hf_problem_type``."""
    head_config = model.config.head_config
    config.architectures = None
    for head_field, hf_field in declared(model.headClass(), "hf_config_fields").items():
        value = getattr(head_config, head_field, None)
        if hf_field == "num_labels":
            if value and getattr(config, "num_labels", None) != value:  # Setting it makes id2label anew.
                config.num_labels = value
        elif value is not None:
            setattr(config, hf_field, value)
    config.problem_type = declared(type(model), "hf_problem_type")


def _verify_same_logits(model: nn.Module, hf_model: PreTrainedModel, name: str, atol: float = 1e-4) -> None:
    """Run both models in eval mode on a few token ids and check the logits agree."""
    vocab = getattr(model.model.config, "vocab_size", None) or 2
    device = next(model.parameters()).device
    input_ids = (torch.arange(8, device=device) * 7 + 3).remainder(vocab).unsqueeze(0)
    attention_mask = torch.ones_like(input_ids)
    modes = model.training, hf_model.training
    model.eval()
    hf_model.eval()
    try:
        with torch.no_grad():
            ours = model(input_ids, attention_mask).logits
            output = hf_model(input_ids=input_ids, attention_mask=attention_mask)
            theirs = hf_logits(output)
    finally:
        model.train(modes[0])
        hf_model.train(modes[1])
    if isinstance(ours, tuple):
        ours = ours[0]
    if theirs.shape != ours.shape or not torch.allclose(ours.float(), theirs.float(), atol=atol, rtol=atol):
        raise NotImplementedError(
            f"{name} is not equivalent to transformers' {type(hf_model).__name__}: on the same weights their logits "
            f"differ (the head config asks for something that class cannot express, e.g. another layer-norm epsilon "
            f"or activation). Pass verify=False to get the model anyway.")
