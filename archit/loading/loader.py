"""``ModelWithHead.from_pretrained``: build the model on the meta device, then fill it from the checkpoint.

Tensors the checkpoint supplies are assigned straight from the file (safetensors) or from ``torch.load(weights_only=True)``
(``.bin``); only the tensors it does not supply are initialised, each by its owner (the head, or the core's class).
``plan_loading`` (and ``plan_base_loading``, ``plan_heads_loading``) answer what a load would do from the same build and
key renaming, reading the weight files' headers only.
"""
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

import torch
from accelerate import init_empty_weights
from accelerate.utils import set_module_tensor_to_device
from torch import nn

from .. import _compat as compat
from .checkpointcode import CONFIG_ENTRY, code_auto_map
from .commits import open_settled, read_consistently
from .configs import (
    HEADS_PATH,
    FieldTypeError,
    base_config_from_dict,
    check_model_type,
    config_path,
    split_checkpoint_config,
    stored_head_prefixes,
)
from .devices import DevicePlacement
from .errors import CheckpointError
from .files import (
    HUB_KWARGS,
    CheckpointReader,
    HeaderReader,
    WeightFiles,
    find_weight_files,
    find_weights,
    read_config_dict,
    wrong_dtype_kind,
)
from .hfmodels import imported_head, transformers_head_config
from .integrity import verify_weight_files
from .keys import CORE_IN_BASE_MODEL, CORE_PATH, HEAD_PATH, KeyRenaming, model_key_for, rename_checkpoint_keys

logger = logging.getLogger(__name__)

@dataclass
class LoadOptions:
    """The keyword arguments of ``from_pretrained``, under one name each on every transformers release."""
    hub: Dict[str, Any] = field(default_factory=dict)
    dtype: Any = None
    device_map: Any = None
    max_memory: Optional[Dict] = None
    attn_implementation: Optional[str] = None
    ignore_mismatched_sizes: bool = False
    ignore_unplaced_weights: bool = False
    output_loading_info: bool = False
    use_safetensors: Optional[bool] = None
    variant: Optional[str] = None
    key_mapping: Optional[Dict[str, str]] = None
    loss: Optional[nn.Module] = None
    trust_remote_code: bool = False
    """Build a base model from the code that ships with the checkpoint (its ``auto_map``); never ``None``."""
    verify: bool = False
    """Check the weight files' checksums (``integrity.py``) before loading them."""
    code_revision: Optional[str] = None
    config_overrides: Dict[str, Any] = field(default_factory=dict)

    _IGNORED = ("low_cpu_mem_usage", "_fast_init", "resume_download", "offload_state_dict")

    @classmethod
    def from_kwargs(cls, kwargs: Dict[str, Any]) -> "LoadOptions":
        kwargs = dict(kwargs)
        if "torch_dtype" in kwargs and "dtype" in kwargs and kwargs["torch_dtype"] != kwargs["dtype"]:
            raise ValueError(f"Got dtype={kwargs['dtype']} and torch_dtype={kwargs['torch_dtype']}: pass one.")
        options = cls(
            hub={k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs},
            dtype=kwargs.pop("dtype", kwargs.pop("torch_dtype", None)),
            device_map=kwargs.pop("device_map", None),
            max_memory=kwargs.pop("max_memory", None),
            attn_implementation=kwargs.pop("attn_implementation", None),
            ignore_mismatched_sizes=kwargs.pop("ignore_mismatched_sizes", False),
            ignore_unplaced_weights=kwargs.pop("ignore_unplaced_weights", False),
            output_loading_info=kwargs.pop("output_loading_info", False),
            use_safetensors=kwargs.pop("use_safetensors", None),
            variant=kwargs.pop("variant", None),
            key_mapping=kwargs.pop("key_mapping", None),
            loss=kwargs.pop("loss", None),
            trust_remote_code=bool(kwargs.pop("trust_remote_code", False)),
            verify=bool(kwargs.pop("verify", False)),
            code_revision=kwargs.pop("code_revision", None),
        )
        kwargs.pop("torch_dtype", None)
        if "use_auth_token" in kwargs:
            options.hub.setdefault("token", kwargs.pop("use_auth_token"))
        for name in cls._IGNORED:
            kwargs.pop(name, None)
        options.config_overrides = kwargs
        return options


def load_model_with_head(cls: type, checkpoint: str, base_model_class: type, head_config: Any = None,
                         head_class: Optional[type] = None,
                         **kwargs: Any) -> Union[nn.Module, Tuple[nn.Module, Dict[str, List]]]:
    """``ModelWithHead.from_pretrained``: the model-with-head ``cls`` on ``base_model_class``, from any checkpoint.
    ``head_class``: a subclass of the task's head class to build instead of it (``load_model_from_parts``)."""
    checkpoint = str(checkpoint)
    options = LoadOptions.from_kwargs(kwargs)
    return read_consistently(_local_folder(checkpoint, options), lambda: _load(
        cls, checkpoint, _build_model_with_head(cls, checkpoint, base_model_class, head_config, options,
                                                CheckpointReader, head_class), options))


def load_model_from_parts(cls: type, checkpoint: str, model_args: Tuple[Any, ...],
                          kwargs: Dict[str, Any]) -> Union[nn.Module, Tuple[nn.Module, Dict[str, List]]]:
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
    for name in ("base_model_config_class", "head_config_class", "weights_only", "state_dict"):
        if name == "state_dict" and kwargs.get(name) is not None:
            raise NotImplementedError(f"{cls.__name__}.from_pretrained: archit loads from the checkpoint's files, not "
                                      f"from a state_dict= (load_state_dict does that).")
        kwargs.pop(name, None)
    return load_model_with_head(cls, checkpoint, type(base_model), head_config, head_class=type(head), loss=loss,
                                **kwargs)


def load_base_model(cls: type, checkpoint: str, **kwargs: Any) -> Union[nn.Module, Tuple[nn.Module, Dict[str, List]]]:
    """``BaseModel.from_pretrained``: a base model from a bare, prefixed, task or archit checkpoint (no head)."""
    checkpoint = str(checkpoint)
    options = LoadOptions.from_kwargs(kwargs)
    return read_consistently(_local_folder(checkpoint, options),
                             lambda: _load(cls, checkpoint, _build_base_model(cls, checkpoint, options), options))


def load_model_with_heads(cls: type, checkpoint: str, base_model_class: type, heads: Optional[Dict[str, Any]] = None,
                          **kwargs: Any) -> Union[nn.Module, Tuple[nn.Module, Dict[str, List]]]:
    """``ModelWithHeads.from_pretrained``: the body from any checkpoint the single-task loader reads, each head from the
    checkpoint where it holds that head (a multi-head or a single-task archit checkpoint), else new.
    ``cls.headsOfCheckpoint(config_dict, heads)`` says which heads to build and which stored head prefixes fill them."""
    checkpoint = str(checkpoint)
    loss_weights = kwargs.pop("loss_weights", None)
    options = LoadOptions.from_kwargs(kwargs)
    return read_consistently(_local_folder(checkpoint, options), lambda: _load(
        cls, checkpoint, _build_model_with_heads(cls, checkpoint, base_model_class, heads, loss_weights, options),
        options))


def plan_loading(cls: type, checkpoint: str, base_model_class: type, head_config: Any = None,
                 **kwargs: Any) -> Dict[str, Any]:
    """
    What ``load_model_with_head`` (``cls.from_pretrained(checkpoint, base_model_class, head_config, **kwargs)``) would
    do, decided without reading a single tensor: the model is built on the meta device exactly as for loading, and the
    checkpoint's keys (from the weight files' headers) go through the same conversion and renaming. Answers
      - ``loaded_keys``: the model's tensors the checkpoint would fill;
      - ``missing_keys``: those that would be newly initialised (as ``output_loading_info`` reports them);
      - ``unexpected_keys``: the checkpoint keys nothing would take;
      - ``converted_keys``: model key -> checkpoint keys, for the tensors the installed transformers' conversion rules
        would build (5.x's fused experts, ...);
      - ``mismatched_keys``: ``(model key, shape in the file, shape in the model)`` for tensors stored under their own
        name with another shape (a converted tensor's shape is known only once converted, so it is not checked);
      - ``tied``: whether the head's output matrix would be tied to the input embeddings; ``None`` when only the
        tensors can tell (a published ArchIt LM checkpoint storing both matrices: they are compared on loading);
      - ``error``: why ``from_pretrained`` would refuse the checkpoint after reading it (tensors of another shape, or
        tensors left unused while base weights would be initialised), else ``None``.
    Raises what ``from_pretrained`` raises before it reads a tensor (no config, no weights, another architecture).

    A conversion rule that splits one stored tensor into several (a fused ``qkv`` into ``q``, ``k``, ``v``) names only
    its first output before it runs: the other outputs count as missing here.
    """
    checkpoint = str(checkpoint)
    options = LoadOptions.from_kwargs(kwargs)
    def plan() -> Dict[str, Any]:
        built = _build_model_with_head(cls, checkpoint, base_model_class, head_config, options, HeaderReader)
        return {**_plan(checkpoint, built, options), "tied": None if built.tie_undecided
                else bool(built.model.tiesWeights())}
    return read_consistently(_local_folder(checkpoint, options), plan)


def plan_base_loading(cls: type, checkpoint: str, **kwargs: Any) -> Dict[str, Any]:
    """``plan_loading`` for ``load_base_model`` (``BaseModel.from_pretrained``): the base model alone."""
    checkpoint = str(checkpoint)
    options = LoadOptions.from_kwargs(kwargs)
    return read_consistently(_local_folder(checkpoint, options),
                             lambda: _plan(checkpoint, _build_base_model(cls, checkpoint, options), options))


def plan_heads_loading(cls: type, checkpoint: str, base_model_class: type, heads: Optional[Dict[str, Any]] = None,
                       **kwargs: Any) -> Dict[str, Any]:
    """``plan_loading`` for ``load_model_with_heads`` (``ModelWithHeads.from_pretrained``)."""
    checkpoint = str(checkpoint)
    loss_weights = kwargs.pop("loss_weights", None)
    options = LoadOptions.from_kwargs(kwargs)
    return read_consistently(_local_folder(checkpoint, options), lambda: _plan(
        checkpoint, _build_model_with_heads(cls, checkpoint, base_model_class, heads, loss_weights, options), options))


def _local_folder(checkpoint: str, options: LoadOptions) -> Optional[str]:
    """The local folder a load reads (``None`` for a hub id), which ``read_consistently`` watches for saves."""
    folder = os.path.join(checkpoint, options.hub.get("subfolder") or "")
    return folder if os.path.isdir(folder) else None


@dataclass
class Layout:
    """Where the transformers core and the head sit in the model being loaded (paths with a trailing dot)."""
    core_path: str
    head_path: Optional[str]


@dataclass
class _Built:
    """A model built on the meta device for a checkpoint, and what filling it needs."""
    model: nn.Module
    config_dict: Dict[str, Any]
    dtype: Optional[torch.dtype]
    layout: Layout
    head_prefixes: Dict[str, str]
    conversion_model: Optional[nn.Module] = None
    expect_new_head: bool = True
    """Whether a head newly initialised is what the caller asked for (logged as info, else as a warning)."""
    tie_undecided: bool = False
    """Whether tying was left as the head config says because deciding it needs tensor data (planning only)."""


def _build_model_with_head(cls: type, checkpoint: str, base_model_class: type, head_config: Any,
                           options: LoadOptions, reader_class: type, head_class: Optional[type] = None) -> _Built:
    config_dict = read_config_dict(checkpoint, **options.hub)
    is_archit = "base_model_config" in config_dict
    given_head_config = head_config
    if head_config is None and not is_archit:
        head_config = transformers_head_config(cls, base_model_class, config_dict)
    base_dict, head_config = split_checkpoint_config(config_dict, checkpoint, head_config,
                                                     cls.headClass().configClass())
    base_config = _base_config(base_model_class, base_dict, checkpoint, options)
    dtype = _resolve_dtype(options.dtype, base_dict)

    def build(head_config: Any) -> nn.Module:
        with init_empty_weights(), compat.no_init_weights():
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
        head_config = dataclasses.replace(head_config, tie_weights=False)
        model = build(head_config)
    model.config.name_or_path = checkpoint

    head_prefixes, task_model = (stored_head_prefixes(config_dict), None) if is_archit else imported_head(
        cls, base_model_class, base_config, config_dict, head_config)
    return _Built(model, config_dict, dtype, Layout(CORE_PATH, HEAD_PATH), head_prefixes, task_model,
                  expect_new_head=not (is_archit or head_prefixes), tie_undecided=untied is None)


def _build_base_model(cls: type, checkpoint: str, options: LoadOptions) -> _Built:
    config_dict = read_config_dict(checkpoint, **options.hub)
    base_dict, _ = split_checkpoint_config(config_dict, checkpoint)
    dtype = _resolve_dtype(options.dtype, base_dict)
    with init_empty_weights(), compat.no_init_weights():
        model = cls(_base_config(cls, base_dict, checkpoint, options))
    return _Built(model, config_dict, dtype, Layout(CORE_IN_BASE_MODEL, None), {})


def _build_model_with_heads(cls: type, checkpoint: str, base_model_class: type, heads: Optional[Dict[str, Any]],
                            loss_weights: Optional[Dict[str, float]], options: LoadOptions) -> _Built:
    config_dict = read_config_dict(checkpoint, **options.hub)
    try:
        specs, head_prefixes = cls.headsOfCheckpoint(config_dict, heads, checkpoint)
    except FieldTypeError as error:
        raise CheckpointError(config_path(checkpoint), str(error), key=error.field) from error
    base_dict, _ = split_checkpoint_config(config_dict, checkpoint)
    base_config = _base_config(base_model_class, base_dict, checkpoint, options)
    dtype = _resolve_dtype(options.dtype, base_dict)
    if loss_weights is None:
        loss_weights = config_dict.get("loss_weights")
    with init_empty_weights(), compat.no_init_weights():
        model = cls.fromModelAndHeadConfigs(base_model_class(base_config), specs, loss_weights=loss_weights)
    model.config.name_or_path = checkpoint
    return _Built(model, config_dict, dtype, Layout(CORE_PATH, HEADS_PATH), head_prefixes,
                  expect_new_head=not head_prefixes and "heads" not in config_dict)


def _load(cls: type, checkpoint: str, built: _Built,
          options: LoadOptions) -> Union[nn.Module, Tuple[nn.Module, Dict[str, List]]]:
    info = fill_from_checkpoint(built.model, checkpoint, built.config_dict, options, built.dtype, built.layout,
                                built.head_prefixes, conversion_model=built.conversion_model,
                                head_in_checkpoint=not built.expect_new_head)
    # A base model's weights are all base weights; a model with heads tells them from the rest by their path.
    core_path = built.layout.core_path if built.layout.head_path is not None else ""
    _report(cls, checkpoint, info, core_path, expect_new_head=built.expect_new_head)
    return (built.model, info) if options.output_loading_info else built.model


def _published_head_config_stores_untied_matrix(model: nn.Module, config_dict: Dict[str, Any], checkpoint: str,
                                                options: LoadOptions, reader_class: type) -> Optional[bool]:
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


@dataclass
class _FillPlan:
    """Where each checkpoint tensor goes, decided from the checkpoint's keys alone."""
    stored: Dict[str, str]
    """Key in the conversion's key space -> checkpoint key."""
    renaming: KeyRenaming
    """Of the units' names."""
    placed: List[compat.ConversionUnit]
    """The units whose tensors are assigned (not unused, not the alias of a tied tensor)."""
    unexpected: List[str]
    """Checkpoint keys nothing takes."""
    state_keys: Set[str]
    aliases: Set[str]
    names: Tuple[str, str, str, Dict[str, str]]
    """The naming arguments of ``rename_checkpoint_keys`` and ``model_key_for``."""


def _plan_fill(model: nn.Module, checkpoint: str, config_dict: Dict[str, Any], options: LoadOptions, layout: Layout,
               head_prefixes: Dict[str, str], reader: Any, conversion_model: Optional[nn.Module]) -> _FillPlan:
    """
    Checkpoint keys go through two renamings, in this order: the installed transformers era's own conversion rules
    (``compat.convert_checkpoint``), run in the key space of a transformers model (``conversion_model``: the
    transformers task model whose head is imported, else the core), then archit's own renaming (``keys.py``: archit
    paths, base-model prefixes, imported head keys, legacy names). Keys of archit checkpoints are converted without
    their ``model._core.`` path. Reads no tensor: the units read theirs when converted.
    """
    core = model.base_model
    conversion_model = conversion_model if conversion_model is not None else core
    state_keys = set(model.state_dict(keep_vars=True).keys())
    non_persistent = {name for name, _ in model.named_buffers()} - state_keys
    aliases = _tied_aliases(model)
    names = (layout.core_path, core.base_model_prefix, layout.head_path or "", head_prefixes)
    stored = {_in_core_key_space(k): k for k in reader.keys()}
    units = compat.convert_checkpoint(conversion_model, list(stored), lambda key: reader.get(stored[key]),
                                      options.key_mapping)
    renaming = rename_checkpoint_keys([unit.name for unit in units], state_keys, non_persistent, *names)
    if not any(target.startswith(layout.core_path) for target in renaming.targets.values()):
        raise ValueError(
            f"Checkpoint '{checkpoint}' supplies none of the weights of {_base_class_name(model)} "
            f"({type(core).__name__}): it is a checkpoint of another architecture "
            f"(model_type '{config_dict.get('base_model_config', config_dict).get('model_type')}', "
            f"architectures {config_dict.get('architectures')}). Pick the base model class that matches it.")
    placed = [unit for unit in units if renaming.targets.get(unit.name) not in (None, *aliases)]
    sources = {unit.name: unit.sources for unit in units}
    unexpected = [stored[key] for name in renaming.unexpected for key in sources[name]]
    return _FillPlan(stored, renaming, placed, unexpected, state_keys, aliases, names)


def _plan(checkpoint: str, built: _Built, options: LoadOptions) -> Dict[str, Any]:
    """``plan_loading``'s answer for a built model (see there), from the weight files' headers."""
    model = built.model
    with HeaderReader(find_weight_files(checkpoint, options.use_safetensors, options.variant, **options.hub)) as reader:
        plan = _plan_fill(model, checkpoint, built.config_dict, options, built.layout, built.head_prefixes, reader,
                          built.conversion_model)
    expected = model.state_dict(keep_vars=True)
    loaded: List[str] = []
    wrong_kind: Optional[str] = None  # The first tensor whose dtype cannot fill its target (loading raises there).
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = []
    converted: Dict[str, List[str]] = {}
    for unit in plan.placed:
        target = plan.renaming.targets[unit.name]
        shape = tuple(expected[target].shape)
        header = None if unit.converted else reader.headers[plan.stored[unit.sources[0]]]
        if header is not None and header.shape != shape:
            mismatched.append((target, header.shape, shape))
            continue
        stored_dtype = getattr(torch, header.dtype, None) if header is not None else None
        if wrong_kind is None and isinstance(stored_dtype, torch.dtype):
            error = wrong_dtype_kind(stored_dtype, expected[target].dtype, header.path, plan.stored[unit.sources[0]],
                                     target)
            wrong_kind = None if error is None else str(error)
        loaded.append(target)
        if unit.converted:
            converted[target] = [plan.stored[key] for key in unit.sources]
    filled = set(loaded)
    model.tie_weights()  # As after loading: the meta build leaves a tied output matrix a parameter of its own.
    if built.layout.head_path is not None:
        copied = _embeddings_copied_into_untied_head(model, built.head_prefixes, built.config_dict,
                                                     lambda name: name in filled)
        if copied is not None:
            filled.add(copied)
    missing = [name for name, tensor in _named_tensors(model) if tensor.device.type == "meta" and name not in filled]
    error = wrong_kind or _refusal(checkpoint, model, options, mismatched, plan.unexpected,
                                   _needed_from_checkpoint(missing, built.layout, not built.expect_new_head))
    return {"loaded_keys": loaded, "missing_keys": missing, "unexpected_keys": plan.unexpected,
            "mismatched_keys": mismatched, "converted_keys": converted, "error": error}


def _refusal(checkpoint: str, model: nn.Module, options: LoadOptions, mismatched: List[Tuple[str, tuple, tuple]],
             unexpected: List[str], new_base: List[str]) -> Optional[str]:
    """Why loading stops after reading the checkpoint, or ``None``: tensors of another shape (unless
    ``ignore_mismatched_sizes``), or tensors left unused while weights that the checkpoint should hold (``new_base``:
    the base model's, and the head's of an archit checkpoint) would be newly initialised (unless
    ``ignore_unplaced_weights``)."""
    if mismatched and not options.ignore_mismatched_sizes:
        listing = "; ".join(f"{key}: checkpoint {a}, model {b}" for key, a, b in sorted(mismatched))
        return (f"Checkpoint '{checkpoint}' has tensors whose shape differs from {type(model).__name__}'s: "
                f"{listing}. Check the head config (e.g. num_labels), or pass ignore_mismatched_sizes=True "
                f"to initialise them anew.")
    if new_base and unexpected and not options.ignore_unplaced_weights:
        return (f"Checkpoint '{checkpoint}' has tensors that nothing in {type(model).__name__} takes "
                f"({_listing(unexpected)}) while weights it lacks would be newly initialised "
                f"({_listing(new_base)}): the checkpoint names or shapes its weights in a way that was not converted "
                f"to {type(model.base_model).__name__}'s (a layout of another transformers release, or another "
                f"architecture), so the model would be silently wrong. Pass ignore_unplaced_weights=True to "
                f"initialise them anyway.")
    return None


def fill_from_checkpoint(model: nn.Module, checkpoint: str, config_dict: Dict[str, Any], options: LoadOptions,
                         dtype: Optional[torch.dtype], layout: Layout, head_prefixes: Dict[str, str],
                         conversion_model: Optional[nn.Module] = None,
                         head_in_checkpoint: bool = False) -> Dict[str, Any]:
    """
    Assign the checkpoint's tensors to ``model`` (built on the meta device), initialise the rest, tie, place. Which
    tensor goes where is decided first, from the keys alone (``_plan_fill``, shared with ``plan_loading``).
    """
    core = model.base_model
    placement = DevicePlacement.plan(model, options.device_map, options.max_memory, dtype)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = []
    converted: Dict[str, List[str]] = {}
    weights = find_weights(checkpoint, options.use_safetensors, options.variant, **options.hub)
    weight_files = weights.paths
    if options.verify:
        _verify_weights(checkpoint, weights)
    with CheckpointReader(weight_files) as reader:
        plan = _plan_fill(model, checkpoint, config_dict, options, layout, head_prefixes, reader, conversion_model)
        expected = model.state_dict(keep_vars=True)
        total_bytes = sum(open_settled(path, os.path.getsize) for path in weight_files)
        for unit in compat.progress(plan.placed, len(plan.placed), "Loading weights", len(plan.placed), total_bytes):
            for name, tensor in unit.convert().items():
                target = plan.renaming.targets[unit.name] if name == unit.name \
                    else model_key_for(name, plan.state_keys, *plan.names)
                if target is None or target in plan.aliases:
                    continue  # Tied to a tensor loaded under its own name.
                shape = tuple(expected[target].shape)
                if tuple(tensor.shape) != shape:
                    mismatched.append((target, tuple(tensor.shape), shape))
                    continue
                source = plan.stored[unit.sources[0]]
                error = wrong_dtype_kind(tensor.dtype, expected[target].dtype, reader.path_of(source), source, target)
                if error is not None:
                    raise error
                set_module_tensor_to_device(model, target, placement.device_of(target), value=tensor,
                                            dtype=dtype if tensor.is_floating_point() else None)
                if unit.converted:
                    converted[target] = [plan.stored[key] for key in unit.sources]
    unexpected = plan.unexpected

    if mismatched and not options.ignore_mismatched_sizes:
        raise ValueError(_refusal(checkpoint, model, options, mismatched, [], []))
    model.tie_weights()
    if layout.head_path is not None:
        _copy_embeddings_into_untied_head(model, head_prefixes, config_dict, placement, dtype)
    missing = [name for name, tensor in _named_tensors(model) if tensor.device.type == "meta"]
    new_base = _needed_from_checkpoint(missing, layout, head_in_checkpoint)
    if new_base and unexpected and not options.ignore_unplaced_weights:
        raise ValueError(_refusal(checkpoint, model, options, [], unexpected, new_base))
    _initialise(model, missing, placement, dtype, layout)
    model.tie_weights()

    if dtype is not None:
        compat.set_config_dtype(core.config, dtype)
    placement.finish(model)
    model.eval()
    logger.info("Loaded %d tensors of %s from '%s'%s.", len(plan.renaming.targets), type(model).__name__, checkpoint,
                f", {len(converted)} of them converted by transformers {compat.TRANSFORMERS_VERSION}'s rules"
                if converted else "")
    return {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": mismatched,
            "converted_keys": converted, "error_msgs": []}


def _verify_weights(checkpoint: str, weights: WeightFiles) -> None:
    """``from_pretrained(..., verify=True)``: raise ``CheckpointError`` for the first damaged weight file; say when
    some files carry no checksum (their structure is checked, their tensor data cannot be)."""
    checks = verify_weight_files(weights.paths, weights.index)
    damaged = [check for check in checks if check.damaged]
    if damaged:
        raise damaged[0].error
    unverified = [check.name for check in checks if check.status == "unverified"]
    if unverified:
        logger.warning("Checkpoint '%s': %s carry no checksum (written by transformers, the published ArchIt or an "
                       "older archit): their structure is sound, their tensor data could not be verified.",
                       checkpoint, ", ".join(unverified))
    else:
        logger.info("Checkpoint '%s': every weight file's checksum matches.", checkpoint)


def _needed_from_checkpoint(missing: List[str], layout: Layout, head_in_checkpoint: bool) -> List[str]:
    """The missing tensors that the checkpoint should have held: the base model's, and every other one when the
    checkpoint holds the head too (an archit checkpoint: a head tensor under a damaged or foreign name is no new head)."""
    return [name for name in missing if head_in_checkpoint or name.startswith(layout.core_path)]


def _in_core_key_space(key: str) -> str:
    """A key of an archit checkpoint without its path to the core (``model._core.``, or ``_core.`` for a base model's),
    so that it is converted and renamed as the core's own key; other keys as they are."""
    for path in (CORE_PATH, CORE_IN_BASE_MODEL):
        if key.startswith(path):
            return key[len(path):]
    return key


def _listing(keys: List[str], shown: int = 12) -> str:
    keys = sorted(keys)
    more = f", ... and {len(keys) - shown} more" if len(keys) > shown else ""
    return f"{len(keys)}: " + ", ".join(keys[:shown]) + more


def _base_class_name(model: nn.Module) -> str:
    return type(model.model).__name__ if hasattr(model, "head") else type(model).__name__


def _base_config(base_model_class: type, base_dict: Dict[str, Any], checkpoint: str, options: LoadOptions):
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
    config.name_or_path = checkpoint
    return config


def _resolve_dtype(dtype: Any, base_dict: Dict[str, Any]) -> Optional[torch.dtype]:
    if dtype == "auto":
        dtype = compat.get_config_dtype(base_dict)
    if dtype is None:
        return None  # Keep the default: float32, as on every transformers 4.x release.
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.replace("torch.", ""), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"dtype '{dtype}' is not a torch dtype (e.g. 'float16', 'bfloat16', 'auto').")
        return resolved
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, a string such as 'bfloat16', or 'auto'; got {dtype!r}.")
    return dtype


def _named_tensors(model: nn.Module):
    yield from model.named_parameters()
    yield from model.named_buffers()


def _tied_aliases(model: nn.Module) -> set:
    """Names under which an already named parameter appears again (a tied output matrix)."""
    seen, aliases = set(), set()
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in seen:
            aliases.add(name)
        seen.add(id(parameter))
    return aliases


def _copy_embeddings_into_untied_head(model, head_prefixes, config_dict, placement, dtype) -> None:
    """A transformers task checkpoint with tied embeddings stores its output matrix once, as the input embeddings:
    an untied archit head imports a copy of them."""
    name = _embeddings_copied_into_untied_head(model, head_prefixes, config_dict,
                                               lambda n: model.get_parameter(n).device.type != "meta")
    if name is not None:
        source = model.get_input_embeddings().weight.detach().clone()
        set_module_tensor_to_device(model, name, placement.device_of(name), value=source, dtype=dtype)


def _embeddings_copied_into_untied_head(model, head_prefixes, config_dict, is_loaded: Callable[[str], bool]
                                        ) -> Optional[str]:
    """The name of the untied output matrix that gets a copy of the input embeddings (see above), or ``None``;
    ``is_loaded(name)`` says whether the checkpoint filled a tensor."""
    output = model.get_output_embeddings()
    if not head_prefixes or output is None or model.tiesWeights():
        return None
    name = next(n for n, p in model.named_parameters() if p is output.weight)
    if is_loaded(name) or not config_dict.get("tie_word_embeddings", True):
        return None
    return name


def _initialise(model: nn.Module, missing: List[str], placement: DevicePlacement, dtype, layout: Layout) -> None:
    """Give every tensor the checkpoint did not supply memory and its owner's initialisation, leaving loaded tensors
    of the same modules untouched."""
    by_module: Dict[str, List[str]] = {}
    for name in missing:
        module_name, _, tensor_name = name.rpartition(".")
        by_module.setdefault(module_name, []).append(tensor_name)
    for module_name, tensor_names in by_module.items():
        module = model.get_submodule(module_name)
        for tensor_name in tensor_names:
            full = f"{module_name}.{tensor_name}" if module_name else tensor_name
            old = getattr(module, tensor_name)
            new_dtype = dtype if (dtype is not None and old.is_floating_point()) else old.dtype
            set_module_tensor_to_device(model, full, placement.device_of(full),
                                        value=torch.empty(old.shape, dtype=new_dtype), dtype=new_dtype)
        loaded = {n: t.detach().clone() for n, t in list(module.named_parameters(recurse=False))
                  + list(module.named_buffers(recurse=False)) if n not in tensor_names}
        _initialise_module(model, module_name, module, layout)
        with torch.no_grad():
            for n, t in loaded.items():
                getattr(module, n).copy_(t)


def _initialise_module(model: nn.Module, module_name: str, module: nn.Module, layout: Layout) -> None:
    if layout.head_path is not None and (module_name + ".").startswith(layout.head_path):
        _owning_head(model, module_name)._init_weights(module)
    elif (module_name + ".").startswith(layout.core_path):
        compat.init_core_module(model.base_model, module)
    elif hasattr(module, "reset_parameters"):
        module.reset_parameters()
    else:
        raise RuntimeError(f"{module_name} of {type(model).__name__} is not in the checkpoint and has no way to be "
                           f"initialised (no reset_parameters()).")


def _owning_head(model: nn.Module, module_name: str) -> nn.Module:
    """The head a module belongs to: its nearest enclosing module that initialises weights (``model.head``, or
    ``model.heads.<name>`` of a model with several heads)."""
    parts = module_name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = model.get_submodule(".".join(parts[:end]))
        if hasattr(candidate, "_init_weights"):
            return candidate
    raise RuntimeError(f"{module_name} of {type(model).__name__} belongs to no head that could initialise it.")


def _report(cls: type, checkpoint: str, info: Dict[str, List], core_path: str, expect_new_head: bool) -> None:
    """Log what the load did; ``core_path`` tells base model weights from the task's own (head, scalar mix, ...)."""
    new_base = [k for k in info["missing_keys"] if k.startswith(core_path)]
    new_head = [k for k in info["missing_keys"] if not k.startswith(core_path)]
    if new_base:
        logger.warning("Some base model weights of %s were not in the checkpoint at '%s' and are newly initialised: "
                       "%s. You should probably train this model before using it.", cls.__name__, checkpoint, new_base)
    if new_head:
        (logger.info if expect_new_head else logger.warning)(
            "The head of %s is newly initialised (not in the checkpoint at '%s'): %s.", cls.__name__, checkpoint, new_head)
    if info["mismatched_keys"]:
        logger.warning("Some weights of the checkpoint at '%s' did not match the size in %s and were newly "
                       "initialised: %s.", checkpoint, cls.__name__,
                       [f"{k}: checkpoint {a} vs model {b}" for k, a, b in info["mismatched_keys"]])
    if info["unexpected_keys"]:
        logger.warning("Some weights of the checkpoint at '%s' were not used by %s: %s.",
                       checkpoint, cls.__name__, info["unexpected_keys"])
