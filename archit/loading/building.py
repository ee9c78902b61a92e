"""Building the model a checkpoint will fill, on the meta device, from its ``config.json``: a model with a head, a base
model alone, or a model with several heads; with what planning its load needs (where core and heads sit, which
stored head prefixes fill them, the transformers task model whose key space and conversion rules a transformers
checkpoint is read in)."""
import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ContextManager, Dict, Mapping, Optional, Type

import torch
from accelerate import init_empty_weights
from torch import nn

from .. import _compat as compat
from .checkpointcode import CONFIG_ENTRY, code_auto_map
from .configs import (
    HEADS_PATH,
    FieldTypeError,
    base_config_from_dict,
    check_model_type,
    config_path,
    heads_of_checkpoint,
    split_checkpoint_config,
    stored_head_prefixes,
)
from .errors import CheckpointError
from .files import find_weight_files, named_dtype, read_config_dict
from .hfmodels import imported_head, transformers_head_config
from .keys import CORE_IN_BASE_MODEL, CORE_PATH, HEAD_PATH
from .options import LoadOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Where the transformers core and the head (or heads) sit in the model being loaded (paths with a trailing dot;
    ``head_path`` ``None`` for a base model alone)."""
    core_path: str
    head_path: Optional[str]


@dataclass
class Built:
    """A model built on the meta device for a checkpoint, and what planning its load needs."""
    model: nn.Module
    config_dict: Dict[str, Any]
    dtype: Optional[torch.dtype]
    layout: Layout
    head_prefixes: Mapping[str, str]
    """Stored head key prefix -> the model's head key prefix (see ``keys.KeyNaming``)."""
    conversion_model: Optional[nn.Module] = None
    """The transformers task model whose key space a transformers checkpoint with an imported head is read in."""
    expect_new_head: bool = True
    """Whether a head newly initialised is what the caller asked for (logged as info, else as a warning)."""
    tie_undecided: bool = False
    """Whether tying was left as the head config says because deciding it needs tensor data (planning only)."""


def empty_build() -> ContextManager:
    """Where a model is built to be filled from a checkpoint, as transformers' ``from_pretrained`` builds it: on the meta
    device without initialisation; under DeepSpeed ZeRO-3 (``compat.zero3_enabled``) inside DeepSpeed's init context
    instead, each parameter partitioned over the ranks as it is created."""
    stack = contextlib.ExitStack()
    if compat.zero3_enabled():
        stack.enter_context(compat.no_init_weights())
        stack.enter_context(compat.zero3_init())
    else:
        stack.enter_context(init_empty_weights())
        stack.enter_context(compat.no_init_weights())
    return stack


def build_model_with_head(cls: Type[Any], checkpoint: str, base_model_class: Type[Any], head_config: Any, options: LoadOptions,
                          reader_class: Type[Any], head_class: Optional[Type[Any]] = None) -> Built:
    """``cls`` on ``base_model_class`` for a checkpoint of any kind (see ``ModelWithHead.from_pretrained``);
    ``head_class``: a subclass of the task's head class to build instead (``load_model_from_parts``)."""
    config_dict = read_config_dict(checkpoint, **options.hub)
    is_archit = "base_model_config" in config_dict
    given_head_config = head_config
    if head_config is None and not is_archit:
        head_config = transformers_head_config(cls, base_model_class, config_dict)
    base_dict, head_config = split_checkpoint_config(config_dict, checkpoint, head_config,
                                                     cls.headClass().configClass())
    base_config = base_config_of(base_model_class, base_dict, checkpoint, options)

    def build(head_config: Any) -> nn.Module:
        with empty_build():
            base_model = base_model_class(base_config)
            if head_class is None or head_class is cls.headClass():
                return cls.fromModelAndHeadConfig(base_model, head_config, loss=options.loss)
            head = head_class.fromConfigs(base_model_class.standardiseConfig(base_config), head_config)
            return cls(cls.config_class(base_model_config=base_config, head_config=head_config), base_model, head,
                       options.loss if options.loss is not None else cls.buildLoss())

    model = build(head_config)
    untied = given_head_config is None and _published_head_config_stores_untied_matrix(
        model, config_dict, checkpoint, options, reader_class)
    if untied:
        model = build(dataclasses.replace(head_config, tie_weights=False))
    model.config.name_or_path = checkpoint
    head_prefixes, task_model = (stored_head_prefixes(config_dict), None) if is_archit else imported_head(
        cls, base_model_class, base_config, config_dict, model.config.head_config)
    return Built(model, config_dict, resolve_dtype(options.dtype, base_dict), Layout(CORE_PATH, HEAD_PATH),
                 head_prefixes, task_model, expect_new_head=not (is_archit or head_prefixes),
                 tie_undecided=untied is None)


def build_base_model(cls: Type[Any], checkpoint: str, options: LoadOptions) -> Built:
    """The base model ``cls`` alone, from a checkpoint of any kind."""
    config_dict = read_config_dict(checkpoint, **options.hub)
    base_dict, _ = split_checkpoint_config(config_dict, checkpoint)
    with empty_build():
        model = cls(base_config_of(cls, base_dict, checkpoint, options))
    return Built(model, config_dict, resolve_dtype(options.dtype, base_dict), Layout(CORE_IN_BASE_MODEL, None), {})


def build_model_with_heads(cls: Type[Any], checkpoint: str, base_model_class: Type[Any],
                           heads: Optional[Mapping[str, Any]], loss_weights: Optional[Dict[str, float]], options: LoadOptions) -> Built:
    """A ``ModelWithHeads`` ``cls``: its heads are those given and those the checkpoint holds
    (``configs.heads_of_checkpoint``)."""
    config_dict = read_config_dict(checkpoint, **options.hub)
    try:
        specs, head_prefixes = heads_of_checkpoint(config_dict, heads, checkpoint)
    except FieldTypeError as error:
        raise CheckpointError(config_path(checkpoint), str(error), key=error.field) from error
    base_dict, _ = split_checkpoint_config(config_dict, checkpoint)
    config = base_config_of(base_model_class, base_dict, checkpoint, options)
    if loss_weights is None:
        loss_weights = config_dict.get("loss_weights")
    with empty_build():
        model = cls.fromModelAndHeadConfigs(base_model_class(config), specs, loss_weights=loss_weights)
    model.config.name_or_path = checkpoint
    return Built(model, config_dict, resolve_dtype(options.dtype, base_dict), Layout(CORE_PATH, HEADS_PATH),
                 head_prefixes, expect_new_head=not head_prefixes and "heads" not in config_dict)


def _published_head_config_stores_untied_matrix(model: nn.Module, config_dict: Dict[str, Any], checkpoint: str,
                                                options: LoadOptions, reader_class: Type[Any]) -> Optional[bool]:
    """
    Whether an archit checkpoint's stored head config predates ``tie_weights`` (the published ArchIt wrote none, e.g.
    ``"head_config": {}``) while the checkpoint stores an output matrix of its own that differs from the input
    embeddings. Such a head computed with its own matrix when it was saved, so it reloads untied; tying it would make it
    another function. A stored ``tie_weights`` (this version writes it) or a head config passed by the caller decides
    by itself. ``None`` when the checkpoint stores both matrices and ``reader_class`` reads no tensor data
    (``HeaderReader``), so that they cannot be compared.
    """
    stored = config_dict.get("head_config")
    if not isinstance(stored, dict) or "tie_weights" in stored or not model.tiesWeights():
        return False
    # Both matrices by module, not by identity: building on the meta device leaves them two parameters until tied.
    matrices = (model.get_output_embeddings().weight, model.get_input_embeddings().weight)
    names = [name for name, p in model.named_parameters(remove_duplicate=False) if any(p is m for m in matrices)]
    output_names = [n for n in names if n.startswith(HEAD_PATH)]
    input_names = [n for n in names if not n.startswith(HEAD_PATH)]
    with reader_class(find_weight_files(checkpoint, options.use_safetensors, options.variant,
                                        **options.hub)) as reader:
        keys = set(reader.keys())
        output_key = next((n for n in output_names if n in keys), None)
        if output_key is None:
            return False
        input_key = next((n for n in input_names if n in keys), None)
        if input_key is not None and not reader.reads_data:
            return None
        untied = input_key is None or not torch.equal(reader.get(output_key), reader.get(input_key))
    if untied:
        logger.info("Checkpoint '%s' stores its own %s and its head config does not say to tie it: it is loaded "
                    "untied (tie_weights=False), as it was computed when saved.", checkpoint, output_key)
    return untied


def base_config_of(base_model_class: Type[Any], base_dict: Dict[str, Any], checkpoint: str, options: LoadOptions):
    """The transformers config of ``base_model_class`` from the checkpoint's base config dictionary, with the
    ``from_pretrained`` overrides. A base model of any family (``AutoBaseModel``, whose config class is the generic
    ``PretrainedConfig``) takes the family from the checkpoint's ``model_type``."""
    config_class = base_model_class.configClass()
    stored_type = base_dict.get("model_type")
    if stored_type is not None and CONFIG_ENTRY not in code_auto_map(base_dict):  # Code: base_config_from_dict decides.
        check_model_type(stored_type, config_path(checkpoint))
    if stored_type and config_class.model_type and stored_type != config_class.model_type:
        logger.warning("Checkpoint '%s' is a '%s' model, but %s builds '%s': weights with matching names will be "
                       "loaded into a different architecture.", checkpoint, stored_type, base_model_class.__name__,
                       config_class.model_type)
    try:
        config = base_config_from_dict(base_dict, config_class, source=config_path(checkpoint), checkpoint=checkpoint,
                                       trust_remote_code=options.trust_remote_code,
                                       code_revision=options.code_revision, **options.hub)
    except CheckpointError:
        raise
    except ValueError as error:  # The refusal of checkpoint code without trust_remote_code=True.
        raise ValueError(f"Checkpoint '{checkpoint}': {error}") from error
    for name, value in options.config_overrides.items():
        if not hasattr(config, name):
            raise TypeError(f"from_pretrained() got an unexpected keyword argument '{name}': it is neither a "
                            f"loading option nor a field of {type(config).__name__}.")
        setattr(config, name, value)
    if options.attn_implementation is not None:
        compat.set_attn_implementation(config, options.attn_implementation)
    if options.experts_implementation is not None:  # Refused (TypeError) on releases that have no such choice.
        compat.set_experts_implementation(config, options.experts_implementation)
    config.name_or_path = checkpoint
    return config


def resolve_dtype(dtype: Any, base_dict: Dict[str, Any]) -> Optional[torch.dtype]:
    """The dtype to load in: ``dtype`` (a torch dtype or its name), the checkpoint's for ``"auto"``, or ``None`` (keep
    the default float32, as on every transformers 4.x release)."""
    if dtype == "auto":
        dtype = compat.get_config_dtype(base_dict)
    if dtype is None:
        return None
    if isinstance(dtype, str):
        resolved = named_dtype(dtype)
        if resolved is None:
            raise ValueError(f"dtype '{dtype}' is not a torch dtype (e.g. 'float16', 'bfloat16', 'auto').")
        return resolved
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, a string such as 'bfloat16', or 'auto'; got {dtype!r}.")
    return dtype
