"""The contract of a per-era backend module: what differs between transformers eras, and nothing else.

Helpers that are the same in every era live in ``all_eras`` and are re-exported by the facade (``__init__``) directly.
"""
from typing import (
    Any,
    Callable,
    ContextManager,
    Dict,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Type,
    Union,
    runtime_checkable,
)

import torch
from torch import Tensor
from transformers import PretrainedConfig, PreTrainedModel

from .all_eras import ConversionUnit, FsdpReceiver


@runtime_checkable
class Backend(Protocol):
    """What a transformers-era backend module (``tf436``, ``tf450``, ``tf500``) provides."""

    ERA: str
    """The first transformers release of the era this backend serves, e.g. ``"4.50"``."""

    CACHE_NAME: str
    """The name of the key-value cache, as a model's forward keyword and as the field of its outputs:
    ``"past_key_values"``, or ``"cache"`` from the 5.x release that renamed it (the old name then still accepted, with a
    deprecation warning)."""

    PreTrainedWrapper: Type[Any]
    """A ``PreTrainedModel`` subclass for models whose attention and weights live in a wrapped transformers core:
    it leaves the attention and experts implementations to the core (its own checks, which would decide for the core's
    config, let the request through), initialises nothing itself and ties weights through ``tie_weights()`` only."""

    GenerationMixin: Type[Any]
    """What a causal-LM model-with-head inherits ``generate`` from, as the era's ``XForCausalLM`` classes inherit
    transformers' ``GenerationMixin`` (listed as a direct base, after the ``PreTrainedModel``: 4.45+ tell a model that
    can generate by that): the era's mixin, with what the era asks of a model class answered for a model whose decoder
    is a wrapped core (``base_model``): whether ``generate`` may give it a ``DynamicCache`` (the core's answer), beam
    search over legacy tuple caches (``_reorder_cache``, where the era asks model classes for it), and, before 4.45,
    ``prepare_inputs_for_generation``. The class flags transformers reads on the model come from the core too
    (``adopt_core_flags``)."""

    OFFLOAD_BUFFERS_KEYWORD: bool
    """Whether this release's ``from_pretrained`` takes ``offload_buffers=`` (4.39+; before, it reaches the model's
    constructor, which refuses it with a ``TypeError``)."""

    def infer_device_map(self, model: torch.nn.Module, device_map: str, max_memory: Optional[Dict[Any, Any]],
                         no_split: List[str], dtype: Optional[torch.dtype]) -> Dict[str, Any]:
        """The device map ``"auto"``, ``"balanced"``, ``"balanced_low_0"`` or ``"sequential"`` of ``model`` (built on the
        meta device, in the dtype it loads in) under ``max_memory``, keeping the modules named in ``no_split`` whole, as
        this era's ``from_pretrained`` infers it: 4.x with accelerate's ``get_balanced_memory`` and
        ``infer_auto_device_map``, 5.x with transformers' own versions of them (``transformers.integrations.accelerate``).
        On a machine without accelerators, what does not fit in ``max_memory["cpu"]`` goes to ``"disk"``."""

    def place(self, model: torch.nn.Module, core: PreTrainedModel, device_map: Dict[str, Any],
              offload_folder: Optional[str], offload_index: Dict[str, Any], offload_buffers: bool) -> None:
        """Put a loaded ``model`` (whose transformers core is ``core``) on the devices of the ``device_map`` it was
        given, as this era's ``from_pretrained`` does: 4.x hand every device map to accelerate's ``dispatch_model``
        (one device: the model is moved there and ``hf_device_map`` recorded); 5.x dispatch a map with several devices
        or ``"disk"`` and leave a model on one device without hooks or ``hf_device_map``. Tensors on ``"disk"`` are
        read by accelerate's hooks through ``offload_index`` (``offload_folder`` holding the written ones)."""

    def offload_weight(self, weight: Tensor, name: str, folder: str, index: Dict[str, Any]) -> Dict[str, Any]:
        """Write ``weight`` (the model's tensor ``name``, which goes to ``"disk"`` and cannot be read in place from a
        safetensors checkpoint) into ``folder`` as this era's ``from_pretrained`` writes it, and answer ``index`` with
        its entry: 4.x with accelerate's ``offload_weight`` (``name.dat``), 5.x with transformers' own
        (``name.safetensors``)."""

    def save_offload_index(self, index: Dict[str, Any], folder: str) -> None:
        """Record the written entries of ``index`` in ``folder`` as this era does once loaded: 4.x with accelerate's
        ``save_offload_index`` (``index.json``, merged with one already there); 5.x record none (the index lives in
        the hooks)."""

    def set_attn_implementation(self, config: PretrainedConfig, implementation: Optional[str]) -> None:
        """Request an attention implementation (``"eager"``, ``"sdpa"``, ...) for models built from ``config``."""

    def set_experts_implementation(self, config: PretrainedConfig, implementation: Union[str, Dict[str, Any]]) -> None:
        """Request an implementation of the mixture-of-experts layers (``"eager"``, ``"grouped_mm"``, ...; or a dict
        per sub-config) for models built from ``config``, as ``from_pretrained(experts_implementation=...)`` of this
        era does: 5.x takes it (the models built from ``config`` check it); releases that have no such choice (4.x)
        refuse it with a ``TypeError`` naming the keyword and the release, as their own ``from_pretrained`` does."""

    def set_config_dtype(self, config: PretrainedConfig, dtype: torch.dtype) -> None:
        """Record the dtype of the loaded weights in ``config``, under the name this era serialises."""

    def no_init_weights(self) -> ContextManager:
        """Context in which building a transformers model skips weight initialisation (for a meta-device build that
        is filled from a checkpoint)."""

    def convert_checkpoint(self, model: PreTrainedModel, keys: Sequence[str], get_tensor: Callable[[str], Tensor],
                           key_mapping: Optional[Mapping[str, str]] = None) -> List[ConversionUnit]:
        """
        The checkpoint's tensors in ``model``'s layout, by this era's own conversion rules for ``model`` (a transformers
        model, usually on the meta device; only its keys, shapes and config are read): 5.x's conversion registry
        (renamings, prefix changes, per-expert tensors merged into fused ones, the legacy names), 4.50-4.57's
        per-class ``_checkpoint_conversion_mapping``, and the caller's ``key_mapping`` (a ``{regex: replacement}`` dict,
        as ``from_pretrained(key_mapping=...)`` of this era applies it). Every key appears in exactly one unit; a key
        no rule places in ``model`` comes back unchanged in a unit of its own (``converted`` false), for the caller's
        own renaming. ``get_tensor`` is called only when a unit converts.
        """

    def as_auto_model_class(self, model_class: type) -> type:
        """A model class of code that ships with a checkpoint (``auto_map``) as transformers' Auto classes hand it out:
        from 4.50, where ``PreTrainedModel`` no longer inherits ``GenerationMixin``, with ``GenerationMixin`` added to a
        class that can generate but does not inherit it; unchanged before."""

    def modernbert_config_class(self) -> Optional[type]:
        """transformers' ``ModernBertConfig`` (4.48+), or ``None`` where the installed release has no ModernBERT. Only
        the configuration module is imported: ModernBERT's modeling module compiles with ``torch.compile`` on import
        (on 4.5x it pulls in ``torch._inductor``, +45 MiB and seconds), so its model class is looked up when used."""

    def checkpoint_layout(self, model: PreTrainedModel, state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """``model``'s state dict as this era's ``save_pretrained`` writes it: on 5.x with the load-time conversions
        reversed (the original, 4.x layout, so that the checkpoint loads on every era); unchanged before."""

    # FSDP RAM-efficient loading (issue 21).
    def fsdp_receiver(self) -> Optional[FsdpReceiver]:
        """Whether this process, under FSDP's RAM-efficient loading, receives its weights from local rank 0 instead of
        reading them, and then where it leaves the model's tensors as this era's ``from_pretrained`` leaves them
        (``FsdpReceiver``); ``None`` where it reads the checkpoint. Decided by the era's own ``is_fsdp_enabled()`` and
        ``is_local_dist_rank_0()``, the functions its ``from_pretrained`` calls (``ACCELERATE_USE_FSDP`` and
        ``FSDP_CPU_RAM_EFFICIENT_LOADING`` with ``torch.distributed`` initialised; ``LOCAL_RANK``)."""
    # Tensor parallelism (issue 21): from_pretrained(distributed_config=..., tp_plan=..., tp_size=..., device_mesh=...).

    TENSOR_PARALLEL_KEYWORDS: Tuple[str, ...]
    """The tensor-parallel keywords of this release's ``from_pretrained`` that archit follows: ``distributed_config``,
    ``tp_plan``, ``tp_size``, ``device_mesh`` on 5.x; none before (4.36-4.49 have none; 4.50-4.57's are not followed,
    and refused with a ``TypeError`` that says so)."""

    def distribute_core(self, core: PreTrainedModel, keywords: Dict[str, Any]) -> bool:
        """Shard ``core`` (built on the meta device; the body of a model with heads, which stay replicated) by its
        tensor-parallel plan as this release's ``from_pretrained`` does before it loads weights, given its keywords
        (``keywords``: those of ``TENSOR_PARALLEL_KEYWORDS`` the caller passed): the process group and device mesh set
        up, the plan resolved (``tp_plan="auto"``: the model's own) and the forward hooks installed by the release's
        own functions. Answers whether the core is now distributed (``False`` for a plan of one rank)."""

    def load_sharded(self, core: PreTrainedModel, name: str, tensor: Tensor, dtype: Optional[torch.dtype]) -> bool:
        """Give ``core``'s tensor ``name`` (a key of ``core``'s own state dict) this rank's part of ``tensor`` (the whole
        tensor from the checkpoint, cast to ``dtype`` when given), as this release's loader does for a model that
        ``distribute_core`` distributed (a ``DTensor`` wrapping the local shard). Answers ``False``, assigning nothing,
        for a tensor the plan leaves whole (the caller assigns it as usual)."""

    def distribute_tied_heads(self, model: torch.nn.Module, core: PreTrainedModel) -> None:
        """After tying: a head's linear layer of ``model`` whose weight is a parameter of ``core`` that
        ``distribute_core`` sharded (the input embeddings, split over the vocabulary, as later 5.x split them) computes
        with that shard as transformers' own causal LMs compute theirs (the release's ``colwise_gather_output`` style:
        each rank its slice of the outputs, gathered); other head parameters stay whole on every rank."""
