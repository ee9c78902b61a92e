"""``from_pretrained`` and ``plan_loading``, for a model with a head, a base model alone and a model with several heads:
build the model on the meta device (``building.py``), plan the load from the checkpoint's keys and headers
(``planning.py``: one ``LoadPlan``), and, to load, execute the plan (``execution.py``): tensors the checkpoint supplies
are assigned straight from the file (safetensors) or from ``torch.load(weights_only=True)`` (``.bin``); only the
tensors it does not supply are initialised, each by its owner (the head, or the core's class). ``plan_loading`` and kin
answer the same plan without reading tensor data; ``archit inspect`` renders it.
"""
import copy
import os
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Type, TypeVar

from .. import _compat as compat
from .building import Built, build_base_model, build_model_with_head, build_model_with_heads
from .commits import read_consistently
from .configs import read_generation_config
from .execution import execute, report, verify_weights
from .files import CheckpointReader, HeaderReader, find_weights
from .options import LoadOptions
from .planning import LoadPlan, make_plan

T = TypeVar("T")
Loaded = Any  # The model, or (model, loading info) with output_loading_info=True: callers annotate it as Self.
"""The model, or with ``output_loading_info=True`` the model and what the load did."""


def load_model_with_head(cls: Type[Any], checkpoint: str, base_model_class: Type[Any], head_config: Any = None,
                         head_class: Optional[Type[Any]] = None, **kwargs: Any) -> Loaded:
    """``ModelWithHead.from_pretrained``: the model-with-head ``cls`` on ``base_model_class``, from any checkpoint.
    ``head_class``: a subclass of the task's head class to build instead of it (``load_model_from_parts``)."""
    return _consistently(checkpoint, kwargs, lambda checkpoint, options: _load(cls, checkpoint, options, build_model_with_head(
        cls, checkpoint, base_model_class, head_config, options, CheckpointReader, head_class)))


def load_model_from_parts(cls: Type[Any], checkpoint: str, model_args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Loaded:
    """
    transformers' ``PreTrainedModel.from_pretrained`` called on a model-with-head class past its own ``from_pretrained``
    (``super(ModelWithHead, Task).from_pretrained(checkpoint, base_model, head, loss, head_config=...,
    base_model_config_class=..., head_config_class=...)``, as the published ArchIt's ``ModelWithHead.from_pretrained``
    called it, and code written against it still does). ``model_args`` are the constructor's arguments after the config
    (a base model, a head, a loss); the keyword arguments are the config's (``config=``, or ``CombinedConfig.
    from_pretrained``'s: ``head_config``, ``base_model_config_class``, ``head_config_class``) and transformers' loading
    options. The model is the one ``cls.from_pretrained(checkpoint, type(base_model), head_config, loss=loss)`` loads,
    with a head of the given head's class: on every transformers release, archit's loader fills it (transformers' own
    loader does not know archit's models).
    """
    if len(model_args) != 3:
        raise TypeError(f"{cls.__name__}: PreTrainedModel.from_pretrained passes its positional arguments after the "
                        f"checkpoint to the constructor, which takes a base model, a head and a loss; got "
                        f"{len(model_args)} of them.")
    base_model, head, loss = model_args
    kwargs = dict(kwargs)
    config = kwargs.pop("config", None)
    head_config = kwargs.pop("head_config", None) or getattr(config, "head_config", None)
    if kwargs.get("state_dict") is not None:
        raise NotImplementedError(f"{cls.__name__}.from_pretrained: archit loads from the checkpoint's files, not from "
                                  f"a state_dict= (load_state_dict does that).")
    for name in ("base_model_config_class", "head_config_class", "weights_only", "state_dict"):
        kwargs.pop(name, None)
    return load_model_with_head(cls, checkpoint, type(base_model), head_config, head_class=type(head), loss=loss,
                                **kwargs)


def load_base_model(cls: Type[Any], checkpoint: str, **kwargs: Any) -> Loaded:
    """``BaseModel.from_pretrained``: a base model from a bare, prefixed, task or archit checkpoint (no head)."""
    return _consistently(checkpoint, kwargs, lambda checkpoint, options: _load(
        cls, checkpoint, options, build_base_model(cls, checkpoint, options)))


def load_model_with_heads(cls: Type[Any], checkpoint: str, base_model_class: Type[Any],
                          heads: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Loaded:
    """``ModelWithHeads.from_pretrained``: the body from any checkpoint the single-task loader reads, each head from the
    checkpoint where it holds that head (a multi-head or a single-task archit checkpoint), else new
    (``configs.heads_of_checkpoint``)."""
    loss_weights = kwargs.pop("loss_weights", None)
    return _consistently(checkpoint, kwargs, lambda checkpoint, options: _load(cls, checkpoint, options, build_model_with_heads(
        cls, checkpoint, base_model_class, heads, loss_weights, options)))


def plan_loading(cls: Type[Any], checkpoint: str, base_model_class: Type[Any], head_config: Any = None,
                 **kwargs: Any) -> LoadPlan:
    """
    The ``LoadPlan`` of ``cls.from_pretrained(checkpoint, base_model_class, head_config, **kwargs)``, decided without
    reading a single tensor: the model is built on the meta device exactly as for loading, and the checkpoint's keys and
    headers go through the same conversion, renaming and checks. ``from_pretrained`` executes this same plan. Raises
    what ``from_pretrained`` raises before it reads a tensor (no config, no weights, another architecture); a refusal
    after that is the plan's ``refusal``.

    What only tensor data can tell stays open: whether a published ArchIt LM checkpoint storing both matrices is tied
    (``tied`` is ``None``), and the outputs of a conversion rule that splits one stored tensor into several (a fused
    ``qkv`` into ``q``, ``k``, ``v``) past the first, which count as missing here.
    """
    return _consistently(checkpoint, kwargs, lambda checkpoint, options: _plan(checkpoint, options, build_model_with_head(
        cls, checkpoint, base_model_class, head_config, options, HeaderReader)))


def plan_base_loading(cls: Type[Any], checkpoint: str, **kwargs: Any) -> LoadPlan:
    """``plan_loading`` for ``load_base_model`` (``BaseModel.from_pretrained``): the base model alone."""
    return _consistently(checkpoint, kwargs, lambda checkpoint, options: _plan(
        checkpoint, options, build_base_model(cls, checkpoint, options)))


def plan_heads_loading(cls: Type[Any], checkpoint: str, base_model_class: Type[Any], heads: Optional[Dict[str, Any]] = None,
                       **kwargs: Any) -> LoadPlan:
    """``plan_loading`` for ``load_model_with_heads`` (``ModelWithHeads.from_pretrained``)."""
    loss_weights = kwargs.pop("loss_weights", None)
    return _consistently(checkpoint, kwargs, lambda checkpoint, options: _plan(checkpoint, options, build_model_with_heads(
        cls, checkpoint, base_model_class, heads, loss_weights, options)))


def _consistently(checkpoint: Any, kwargs: Dict[str, Any], action: Callable[[str, LoadOptions], T]) -> T:
    """``action(checkpoint, options)`` with the keyword arguments read once, reading a local folder consistently: if a
    save commits into it meanwhile, the action runs again (``commits.read_consistently``)."""
    checkpoint = str(checkpoint)
    options = LoadOptions.from_kwargs(kwargs)
    folder = os.path.join(checkpoint, options.hub.get("subfolder") or "")
    return read_consistently(folder if os.path.isdir(folder) else None, lambda: action(checkpoint, options))


def _plan(checkpoint: str, options: LoadOptions, built: Built) -> LoadPlan:
    weights = find_weights(checkpoint, options.use_safetensors, options.variant, **options.hub)
    with HeaderReader(weights.paths) as reader:
        return make_plan(built, checkpoint, options, reader)


def _load(cls: Type[Any], checkpoint: str, options: LoadOptions, built: Built) -> Loaded:
    weights = find_weights(checkpoint, options.use_safetensors, options.variant, **options.hub)
    if options.verify:
        verify_weights(checkpoint, weights)
    # Tensor parallelism: the body takes the release's plan before loading, as transformers' from_pretrained does.
    compat.distribute_core(built.model.base_model, options.tensor_parallel)
    with CheckpointReader(weights.paths) as reader:
        plan = make_plan(built, checkpoint, options, reader)
        info = execute(plan, built, options, reader, weights)
    if options.tensor_parallel:  # A head tied to a sharded body parameter computes with its shard.
        compat.distribute_tied_heads(built.model, built.model.base_model)
    _set_generation_config(built.model, checkpoint, options)
    # A base model's weights are all base weights; a model with heads tells them from the rest by their path.
    core_path = built.layout.core_path if built.layout.head_path is not None else ""
    report(cls, checkpoint, info, core_path, expect_new_head=built.expect_new_head)
    return (built.model, info) if options.output_loading_info else built.model


def _set_generation_config(model: Any, checkpoint: str, options: LoadOptions) -> None:
    """A model that generates (one with a ``generation_config``, built from its config as transformers builds a causal
    LM's) takes the ``generation_config=`` given, else the checkpoint's ``generation_config.json`` where it has one, as
    transformers' ``from_pretrained`` does."""
    if getattr(model, "generation_config", None) is None:
        return
    if options.generation_config is not None:
        model.generation_config = copy.deepcopy(options.generation_config)
        return
    generation_config = read_generation_config(checkpoint, **options.hub)
    if generation_config is not None:
        model.generation_config = generation_config
