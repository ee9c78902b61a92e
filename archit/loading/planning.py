"""Planning a load, once: which stored tensor, through which conversion, fills which tensor of the model; which stored
tensors nothing takes, which have another shape or dtype kind, which tensors of the model are new; whether the head is
tied; whether the load is refused. Decided from the checkpoint's keys and headers and the model built on the meta
device, before any tensor data is read, into one frozen ``LoadPlan``: ``plan_loading`` and ``archit inspect`` render it,
``from_pretrained`` executes it (``execution.py``).

Checkpoint keys go through two renamings, in this order: the installed transformers era's own conversion rules
(``compat.convert_checkpoint``), run in the key space of a transformers model (the transformers task model whose head
is imported, else the core), then archit's own renaming (``keys.py``: archit paths, base-model prefixes, imported head
keys, legacy names). Keys of archit checkpoints are converted without their ``model._core.`` path.
"""
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Tuple

from torch import nn

from .. import _compat as compat
from .building import Built, Layout
from .devices import DevicePlacement, DiskTensor
from .errors import CheckpointError
from .files import TensorHeader, is_safetensors, named_dtype, wrong_dtype_kind
from .keys import CORE_IN_BASE_MODEL, CORE_PATH, KeyNaming, rename_checkpoint_keys
from .options import LoadOptions

Shape = Tuple[int, ...]
Mismatch = Tuple[str, Shape, Shape]
"""A model key, the shape the checkpoint stores, the shape of the model's tensor."""


@dataclass(frozen=True)
class Placement:
    """One conversion unit of the checkpoint and the model tensor it fills."""
    unit: compat.ConversionUnit
    target: str
    stored: Tuple[str, ...]
    """The checkpoint keys it is built from."""
    header: Optional[TensorHeader]
    """What the file says of the tensor, for a tensor stored as it is loaded; ``None`` for a converted one (its shape and
    dtype are known once converted)."""


@dataclass(frozen=True)
class Refusal:
    """Why a load stops before reading tensor data: ``error()`` is what ``from_pretrained`` raises."""
    message: str
    path: Optional[str] = None
    """The file at fault, for a damaged checkpoint (a ``CheckpointError``); else the refusal is a ``ValueError``."""
    key: Optional[str] = None

    def error(self) -> Exception:
        return CheckpointError(self.path, self.message, self.key) if self.path else ValueError(self.message)

    def __str__(self) -> str:
        return str(self.error())


@dataclass(frozen=True)
class LoadPlan:
    """What a load does (see the module docstring)."""
    checkpoint: str
    model_class: str
    naming: KeyNaming
    placements: Tuple[Placement, ...]
    """The units whose tensors are assigned, in checkpoint order."""
    unexpected: Tuple[str, ...]
    """Checkpoint keys nothing takes."""
    mismatched: Tuple[Mismatch, ...]
    """Tensors stored under their own name with another shape than the model's (initialised anew with
    ``ignore_mismatched_sizes``, else the load is refused)."""
    missing: Tuple[str, ...]
    """The model's tensors that are newly initialised."""
    converted: Mapping[str, Tuple[str, ...]]
    """Model key -> the checkpoint keys an era's conversion rules build it from."""
    embeddings_copied_to: Optional[str]
    """An untied output matrix that gets a copy of the input embeddings (a transformers task checkpoint with tied
    embeddings stores the matrix once)."""
    tied: Optional[bool]
    """Whether the head's output matrix is tied to the input embeddings; ``None`` when only tensor data can tell (a
    published ArchIt LM checkpoint storing both: planning reads no data), or the model has no such head."""
    refusal: Optional[Refusal]
    state_keys: FrozenSet[str]
    aliases: FrozenSet[str]
    """Names under which a tensor of the model appears a second time (a tied output matrix)."""
    placement: DevicePlacement
    """The device of each module: the ``device_map`` given, or inferred from ``"auto"`` and ``max_memory`` as the
    installed transformers infers it (``"disk"`` entries included)."""
    disk: Mapping[str, DiskTensor]
    """The model's tensors that go to ``"disk"`` and how accelerate's hooks will read them: in place from the
    checkpoint's safetensors file, or written into ``offload_folder`` while loading."""
    fsdp_receiver: Optional[compat.FsdpReceiver] = None
    """Under FSDP's RAM-efficient loading on a rank other than local rank 0 (``compat.fsdp_receiver``: the installed
    transformers' own test): this process reads no tensor data, and leaves the tensors as that release leaves them for
    accelerate's FSDP preparation to fill from local rank 0; ``None``: it reads the checkpoint."""

    @property
    def reads_tensor_data(self) -> bool:
        """Whether executing the plan reads tensor data (``False`` on an FSDP rank that receives its weights)."""
        return self.fsdp_receiver is None

    @property
    def device_map(self) -> Optional[Dict[str, Any]]:
        """The device map the model is placed by (what ``hf_device_map`` records), or ``None`` without ``device_map``."""
        return dict(self.placement.device_map) if self.placement.given else None

    @property
    def loaded(self) -> Tuple[str, ...]:
        """The model's tensors the checkpoint fills."""
        return tuple(placement.target for placement in self.placements)

    @property
    def error(self) -> Optional[str]:
        """The refusal's message, or ``None``."""
        return None if self.refusal is None else str(self.refusal)

    def loading_info(self) -> Dict[str, Any]:
        """What ``output_loading_info=True`` reports, as planned."""
        return {"missing_keys": list(self.missing), "unexpected_keys": list(self.unexpected),
                "mismatched_keys": list(self.mismatched),
                "converted_keys": {k: list(v) for k, v in self.converted.items()}, "error_msgs": []}


def make_plan(built: Built, checkpoint: str, options: LoadOptions, reader: Any) -> LoadPlan:
    """The plan of loading the checkpoint read by ``reader`` (a ``files.CheckpointReader`` or ``HeaderReader``: keys and
    headers; no tensor data is read here) into ``built``'s model."""
    model = built.model
    layout = built.layout
    naming = KeyNaming(layout.core_path, model.base_model.base_model_prefix, layout.head_path or "",
                       MappingProxyType(dict(built.head_prefixes)))
    state_keys = frozenset(model.state_dict(keep_vars=True))
    aliases = frozenset(tied_aliases(model))
    stored = {_in_core_key_space(key): key for key in reader.keys()}
    conversion_model = built.conversion_model if built.conversion_model is not None else model.base_model
    units = compat.convert_checkpoint(conversion_model, list(stored), lambda key: reader.get(stored[key]),
                                      options.key_mapping)
    non_persistent = {name for name, _ in model.named_buffers()} - state_keys
    renaming = rename_checkpoint_keys([unit.name for unit in units], set(state_keys), non_persistent, naming)
    _check_supplies_core(checkpoint, built, renaming.targets.values())
    placements, mismatched, wrong_kind = _placements(units, renaming.targets, stored, aliases, model, reader)
    filled = {placement.target for placement in placements}
    model.tie_weights()  # As after loading: the meta build leaves a tied output matrix a parameter of its own.
    copied = None if layout.head_path is None else embeddings_copied_into_untied_head(
        model, built.head_prefixes, built.config_dict, lambda name: name in filled)
    missing = [name for name, tensor in named_tensors(model)
               if (tensor.device.type == "meta" or compat.is_partitioned(tensor)) and name not in filled
               and name != copied]
    sources = {unit.name: unit.sources for unit in units}
    unexpected = [stored[key] for name in renaming.unexpected for key in sources[name]]
    placement = DevicePlacement.plan(model, options.device_map, options.max_memory, built.dtype)
    disk = disk_tensors(model, placement, placements, reader, built.dtype, bool(options.offload_buffers), state_keys)
    refusal = wrong_kind or refusal_for(checkpoint, model, options, mismatched, unexpected,
                                        needed_from_checkpoint(missing, layout, not built.expect_new_head)
                                        ) or offload_refusal(disk, options)
    return LoadPlan(
        checkpoint=checkpoint, model_class=type(model).__name__, naming=naming, placements=tuple(placements),
        unexpected=tuple(unexpected), mismatched=tuple(mismatched), missing=tuple(missing),
        converted=MappingProxyType({p.target: p.stored for p in placements if p.unit.converted}),
        embeddings_copied_to=copied, tied=_tied(built), refusal=refusal, state_keys=state_keys, aliases=aliases,
        placement=placement, disk=MappingProxyType(disk), fsdp_receiver=compat.fsdp_receiver())


def disk_tensors(model: nn.Module, placement: DevicePlacement, placements: List[Placement], reader: Any,
                 dtype: Any, offload_buffers: bool, state_keys: FrozenSet[str]) -> Dict[str, DiskTensor]:
    """The tensors of modules the device map puts on ``"disk"`` that accelerate's hooks read from an offload index:
    parameters, and persistent buffers with ``offload_buffers`` (other buffers stay in memory, as accelerate keeps
    them). A tensor stored as it is loaded in a safetensors file is read from it in place, as transformers reads a
    safetensors checkpoint's offloaded tensors on every release; any other (in a ``.bin`` file, converted, new) is
    written into ``offload_folder`` while loading."""
    if not placement.has_disk:
        return {}
    filled = {placement_.target: placement_ for placement_ in placements}
    tensors: Dict[str, Any] = dict(model.named_parameters())
    if offload_buffers:
        tensors.update((name, buffer) for name, buffer in model.named_buffers() if name in state_keys)
    disk: Dict[str, DiskTensor] = {}
    for name, tensor in tensors.items():
        if not placement.on_disk(name):
            continue
        loaded_dtype = dtype if (dtype is not None and tensor.is_floating_point()) else tensor.dtype
        source = filled.get(name)
        if source is not None and len(source.stored) == 1 and not source.unit.computed and \
                is_safetensors(reader.path_of(source.stored[0])):
            disk[name] = DiskTensor(loaded_dtype, reader.path_of(source.stored[0]), source.stored[0])
        else:
            disk[name] = DiskTensor(loaded_dtype)
    return disk


def offload_refusal(disk: Mapping[str, DiskTensor], options: LoadOptions) -> Optional[Refusal]:
    """A device map with ``"disk"`` tensors that must be written somewhere, and no ``offload_folder`` to write them."""
    written = [name for name, tensor in disk.items() if not tensor.in_place]
    if not written or options.offload_folder is not None:
        return None
    return Refusal(f"device_map puts {listing_of(written)} on 'disk', and they cannot be read in place from a "
                   f"safetensors checkpoint (stored in a .bin file, converted, or newly initialised): pass "
                   f"offload_folder= (a folder to write them into), as transformers' from_pretrained asks.")


def _placements(units: List[compat.ConversionUnit], targets: Mapping[str, str], stored: Mapping[str, str],
                aliases: FrozenSet[str], model: nn.Module,
                reader: Any) -> Tuple[List[Placement], List[Mismatch], Optional[Refusal]]:
    """The units that fill a tensor of the model (not an alias of a tied one), those whose stored shape differs, and
    the first stored tensor whose dtype kind cannot fill its target."""
    expected = model.state_dict(keep_vars=True)
    placements: List[Placement] = []
    mismatched: List[Mismatch] = []
    wrong_kind: Optional[Refusal] = None
    for unit in units:
        target = targets.get(unit.name)
        if target is None or target in aliases:
            continue
        keys = tuple(stored[key] for key in unit.sources)
        header = None if unit.converted else reader.header(keys[0])
        shape = tuple(compat.full_shape(expected[target]))
        if header is not None and header.shape != shape:
            mismatched.append((target, header.shape, shape))
            continue
        stored_dtype = named_dtype(header.dtype) if header is not None else None
        if wrong_kind is None and header is not None and stored_dtype is not None:
            error = wrong_dtype_kind(stored_dtype, expected[target].dtype, header.path, keys[0], target)
            wrong_kind = None if error is None else Refusal(error.problem, error.path, error.key)
        placements.append(Placement(unit, target, keys, header))
    return placements, mismatched, wrong_kind


def _check_supplies_core(checkpoint: str, built: Built, targets: Any) -> None:
    """A checkpoint that fills no tensor of the core is of another architecture: refused before anything else."""
    if any(target.startswith(built.layout.core_path) for target in targets):
        return
    model = built.model
    base = type(model.model).__name__ if hasattr(model, "head") else type(model).__name__
    config_dict = built.config_dict
    raise ValueError(
        f"Checkpoint '{checkpoint}' supplies none of the weights of {base} ({type(model.base_model).__name__}): it is "
        f"a checkpoint of another architecture (model_type "
        f"'{config_dict.get('base_model_config', config_dict).get('model_type')}', architectures "
        f"{config_dict.get('architectures')}). Pick the base model class that matches it.")


def _tied(built: Built) -> Optional[bool]:
    ties = getattr(built.model, "tiesWeights", None)
    if built.tie_undecided or ties is None:
        return None
    return bool(ties())


def refusal_for(checkpoint: str, model: nn.Module, options: LoadOptions, mismatched: List[Mismatch],
                unexpected: List[str], new_base: List[str]) -> Optional[Refusal]:
    """Why loading stops, or ``None``: tensors of another shape (unless ``ignore_mismatched_sizes``), or tensors left
    unused while weights that the checkpoint should hold (``new_base``: the base model's, and the head's of an archit
    checkpoint) would be newly initialised (unless ``ignore_unplaced_weights``)."""
    if mismatched and not options.ignore_mismatched_sizes:
        listing = "; ".join(f"{key}: checkpoint {a}, model {b}" for key, a, b in sorted(mismatched))
        return Refusal(f"Checkpoint '{checkpoint}' has tensors whose shape differs from {type(model).__name__}'s: "
                       f"{listing}. Check the head config (e.g. num_labels), or pass ignore_mismatched_sizes=True "
                       f"to initialise them anew.")
    if new_base and unexpected and not options.ignore_unplaced_weights:
        return Refusal(f"Checkpoint '{checkpoint}' has tensors that nothing in {type(model).__name__} takes "
                       f"({listing_of(unexpected)}) while weights it lacks would be newly initialised "
                       f"({listing_of(new_base)}): the checkpoint names or shapes its weights in a way that was not "
                       f"converted to {type(model.base_model).__name__}'s (a layout of another transformers release, "
                       f"or another architecture), so the model would be silently wrong. Pass "
                       f"ignore_unplaced_weights=True to initialise them anyway.")
    return None


def needed_from_checkpoint(missing: List[str], layout: Layout, head_in_checkpoint: bool) -> List[str]:
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


def listing_of(keys: List[str], shown: int = 12) -> str:
    """``"3: a, b, c"``; the first ``shown`` of the sorted keys, and how many more."""
    keys = sorted(keys)
    more = f", ... and {len(keys) - shown} more" if len(keys) > shown else ""
    return f"{len(keys)}: " + ", ".join(keys[:shown]) + more


def named_tensors(model: nn.Module):
    yield from model.named_parameters()
    yield from model.named_buffers()


def tied_aliases(model: nn.Module) -> set:
    """Names under which an already named parameter appears again (a tied output matrix)."""
    seen, aliases = set(), set()
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in seen:
            aliases.add(name)
        seen.add(id(parameter))
    return aliases


def embeddings_copied_into_untied_head(model: nn.Module, head_prefixes: Mapping[str, str],
                                       config_dict: Dict[str, Any], is_loaded: Callable[[str], bool]) -> Optional[str]:
    """The name of an untied output matrix that gets a copy of the input embeddings, or ``None``: a transformers task
    checkpoint with tied embeddings stores its output matrix once, as the input embeddings. ``is_loaded(name)`` says
    whether the checkpoint fills a tensor."""
    output = model.get_output_embeddings()
    if not head_prefixes or output is None or model.tiesWeights():
        return None
    name = next(n for n, p in model.named_parameters() if p is output.weight)
    if is_loaded(name) or not config_dict.get("tie_word_embeddings", True):
        return None
    return name
