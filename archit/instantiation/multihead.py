"""
Several heads on one body: ``ModelWithHeads``.

One ``BaseModel`` (``.model``) and any number of heads (``.heads``, a name-keyed module dict), each the head of a task
of ``archit.instantiation.tasks`` with that task's loss. The body runs once per forward, whatever the number of heads;
``labels`` is a dict keyed by head name, and the loss is the weighted sum of the losses of the heads that got labels.
``asTask(name)`` is the single-task model of one head, sharing the body's and the head's parameters, so export and every
single-task tool keep working.

Tasks whose inputs have another shape than ``B x L`` (``ForSingleAnswerMultipleChoice``: ``B x C x L``;
``ForDependencyParsing``: ``B x W x S``) reshape them before the body runs, so they cannot share one body pass with
other heads; they are refused as heads (use their single-task models).
"""
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.loss import _Loss
from transformers import GenerationConfig, PretrainedConfig
from transformers.utils import ModelOutput
from typing_extensions import Self

from .. import _compat as compat
from ..loading import load_model_with_heads, read_head_files, save_head_files, save_model_with_head
from ..loading.configs import (
    base_config_from_dict,
    config_path,
    head_spec_of,
    heads_of_checkpoint,
    named_class,
    split_checkpoint_config,
)
from ..loading.files import HEAD_WEIGHTS_NAME, wrong_dtype_kind
from ..loading.keys import CORE_PATH
from . import tasks as builtin_tasks
from .abstracts import (
    AllHiddenStatesAndPooling,
    BaseModel,
    ModelWithHead,
    _without_persistent_state,
    bodyKeywords,
    bodyResults,
    fullAttentionMask,
)
from .configs import BOOKKEEPING_KEYS, CombinedConfig, HeadConfig, _to_serialisable

__all__ = ["ModelWithHeads", "ModelWithHeadsOutput", "MultiHeadConfig", "HeadSpec"]

HeadSpec = Tuple[Type[ModelWithHead], Optional[HeadConfig]]
"""What a head is: the task whose head and loss it is, and its head config (``None``: read it from the checkpoint)."""


def task_name(task: Type[ModelWithHead]) -> str:
    """How a task is written in a checkpoint: its name for archit's own tasks, ``module:qualified name`` otherwise."""
    if getattr(builtin_tasks, task.__name__, None) is task:
        return task.__name__
    return f"{task.__module__}:{task.__qualname__}"


def task_of(name: str) -> Type[ModelWithHead]:
    """The task class a checkpoint names (see ``task_name``)."""
    try:
        return named_class(name, builtin_tasks.__name__)
    except ValueError:
        raise ValueError(f"The checkpoint names the task '{name}', which is neither a task of "
                         f"archit.instantiation.tasks nor an importable 'module:Class'.") from None


class MultiHeadConfig(CombinedConfig):
    """
    The config of a ``ModelWithHeads``: the base model's transformers config, and per head its task and head config.
    Serialised as ``{"base_model_config": {...}, "heads": {name: {"task": ..., "head_config": {...}}},
    "loss_weights": {name: weight}, ...}``; attribute access falls back to the base config, as ``CombinedConfig``'s.
    """

    model_type = "archit-heads"
    # What transformers' Trainer leaves out of predictions: they are the logits by head, as a one-head model's are its
    # logits (the per-head losses are in the loss already; the body's cache and outputs are not predictions).
    keys_to_ignore_at_inference = ["losses", "base_model_output", compat.CACHE_NAME]

    def __init__(self, base_model_config: Union[dict, PretrainedConfig, None] = None,
                 heads: Optional[Mapping[str, Any]] = None, loss_weights: Optional[Mapping[str, float]] = None,
                 base_model_config_class: Optional[Type[Any]] = None, **kwargs):
        if base_model_config is None:
            raise ValueError("MultiHeadConfig needs a base_model_config (a transformers config or its dictionary).")
        if isinstance(base_model_config, dict):
            base_model_config = base_config_from_dict(base_model_config, base_model_config_class)
        for key in (*BOOKKEEPING_KEYS, "head_config"):
            kwargs.pop(key, None)
        PretrainedConfig.__init__(self, **kwargs)
        object.__setattr__(self, "base_model_config", base_model_config)
        object.__setattr__(self, "head_config", None)
        object.__setattr__(self, "heads", {name: head_spec_of(spec) for name, spec in (heads or {}).items()})
        object.__setattr__(self, "loss_weights", {name: float((loss_weights or {}).get(name, 1.0)) for name in self.heads})

    @classmethod
    def _serialised_fields(cls) -> List[str]:
        return ["base_model_config", "heads", "loss_weights"]

    @classmethod
    def from_checkpoint_dict(cls, config_dict: Dict[str, Any], checkpoint: str, head_config: Optional[Any],
                             base_model_config_class: Optional[Type[Any]], head_config_class: Optional[Type[Any]],
                             trust_remote_code: bool = False, runtime: Optional[Dict[str, Any]] = None,
                             **hub_kwargs: Any) -> "MultiHeadConfig":
        """The config of a checkpoint's ``config.json`` (what ``MultiHeadConfig.from_pretrained`` reads): its base config
        and the heads ``ModelWithHeads.from_pretrained`` finds there without being given any (a multi-head checkpoint's,
        with their loss weights; a single-task archit checkpoint's one head, named by its task; none for a base model's
        or a transformers checkpoint, whose config is the body's alone). There is no one head config to give."""
        if head_config is not None or head_config_class is not None:
            raise TypeError("MultiHeadConfig.from_pretrained reads every head from the checkpoint: it takes no "
                            "head_config or head_config_class (ModelWithHeads.from_pretrained takes heads=).")
        specs, _ = heads_of_checkpoint(config_dict, None if "base_model_config" in config_dict else {}, checkpoint)
        base_dict, _ = split_checkpoint_config(config_dict, checkpoint)
        base_config = base_config_from_dict(base_dict, base_model_config_class, source=config_path(checkpoint),
                                            checkpoint=checkpoint, trust_remote_code=trust_remote_code, **hub_kwargs)
        base_config.name_or_path = checkpoint
        config = cls(base_model_config=base_config, heads=specs,
                     loss_weights=config_dict.get("loss_weights") if "heads" in config_dict else None)
        config.name_or_path = checkpoint
        return config

    def _fields_to_dictables(self) -> Dict[str, Any]:
        stored = super()._fields_to_dictables()
        stored.pop("head_config")
        stored["heads"] = {name: {"task": task_name(task), "head_config": _to_serialisable(head_config)}
                           for name, (task, head_config) in self.heads.items()}
        stored["loss_weights"] = dict(self.loss_weights)
        return stored


@dataclass
class ModelWithHeadsOutput(ModelOutput):
    """Loss first, then the logits of every head that ran (by name) and the loss of every head that got labels; then,
    when asked for, the body's cache, hidden states and attention weights, as ``ModelWithHeadOutput``. Under the
    ``Trainer``, predictions are the logits by head (``MultiHeadConfig.keys_to_ignore_at_inference``)."""
    loss: Optional[Tensor] = None
    logits: Optional[Dict[str, Any]] = None
    losses: Optional[Dict[str, Tensor]] = None
    base_model_output: Optional[AllHiddenStatesAndPooling] = None
    if compat.CACHE_NAME == "cache":  # The release's name for the key-value cache (see abstracts.BodyOutput).
        cache: Optional[Any] = None
    else:
        past_key_values: Optional[Any] = None
    hidden_states: Optional[Tuple[Tensor, ...]] = None
    attentions: Optional[Tuple[Tensor, ...]] = None


class ModelWithHeads(compat.PreTrainedWrapper):
    """
    One body (``.model``, a ``BaseModel``), several heads (``.heads``): see the module docstring. Head parameters are
    named under their head's name (``heads.ner.dense.weight``); checkpoints keep the published nested config, with one
    entry per head.
    """

    config_class = MultiHeadConfig
    base_model_prefix = CORE_PATH.rstrip(".")
    accepts_loss_kwargs = False  # As ModelWithHead: each head's loss averages itself.

    def __init__(self, config: MultiHeadConfig, model: BaseModel, heads: Mapping[str, nn.Module],
                 losses: Mapping[str, _Loss]):
        """Use ``fromModelAndHeadConfigs``, ``fromTaskModels`` or ``from_pretrained`` rather than this constructor."""
        super().__init__(config)
        self.supports_gradient_checkpointing = model.base_model.supports_gradient_checkpointing
        compat.adopt_core_flags(self, model.base_model)  # What transformers reads on a model (cache, attention).
        self.model: BaseModel = model
        self.heads = nn.ModuleDict()
        self.losses = nn.ModuleDict()  # The heads' loss modules, so that their buffers move with the model (unsaved).
        self._tasks: Dict[str, ModelWithHead] = {}  # Single-task views on the shared modules; not submodules.
        for name, head in heads.items():
            self._register(name, head, losses[name])
        self.tie_weights()

    # Building

    @classmethod
    def fromModelAndHeadConfigs(cls, base_model: BaseModel, heads: Mapping[str, HeadSpec],
                                loss_weights: Optional[Mapping[str, float]] = None,
                                losses: Optional[Mapping[str, _Loss]] = None) -> Self:
        """Put newly initialised heads ``{name: (task, head config)}`` on an existing base model. ``loss_weights``
        weigh the heads' losses in the sum (default 1.0 each); ``losses`` replace tasks' default losses by name."""
        losses = dict(losses or {})
        standard = type(base_model).standardiseConfig(base_model.config)
        built, loss_modules = {}, {}
        for name, (task, head_config) in heads.items():
            _check_head(name, task, head_config)
            built[name] = task.buildHead(standard, head_config)
            loss_modules[name] = losses.pop(name, None) or task.buildLoss()
        if losses:
            raise KeyError(f"losses= names heads that are not built: {sorted(losses)}.")
        config = MultiHeadConfig(base_model_config=base_model.config, heads=dict(heads),
                                 loss_weights=_checked_weights(loss_weights, heads))
        return cls(config, base_model, built, loss_modules)

    @classmethod
    def fromTaskModels(cls, task_models: Mapping[str, ModelWithHead],
                       loss_weights: Optional[Mapping[str, float]] = None) -> Self:
        """One model with the heads of single-task models whose bodies are the same (same class, config and weights:
        the first one's body is used). Raises ``ValueError`` naming the first body tensor that differs."""
        if not task_models:
            raise ValueError("fromTaskModels needs at least one task model.")
        names = list(task_models)
        body = task_models[names[0]].model
        reference = body.state_dict()
        for name in names[1:]:
            other = task_models[name].model
            if type(other) is not type(body):
                raise ValueError(f"Task models '{names[0]}' and '{name}' have different bodies "
                                 f"({type(body).__name__} vs {type(other).__name__}).")
            for key, tensor in other.state_dict().items():
                if key not in reference or reference[key].shape != tensor.shape or \
                        not torch.equal(reference[key], tensor.to(reference[key].device)):
                    raise ValueError(f"Task models '{names[0]}' and '{name}' have different base weights (first "
                                     f"difference: {key}); they cannot share one body.")
        for name, task_model in task_models.items():
            _check_head(name, type(task_model), task_model.config.head_config)
        config = MultiHeadConfig(base_model_config=body.config,
                                 heads={n: (type(m), m.config.head_config) for n, m in task_models.items()},
                                 loss_weights=_checked_weights(loss_weights, task_models))
        model = cls(config, body, {n: m.head for n, m in task_models.items()},
                    {n: m.loss_function for n, m in task_models.items()})
        generation_configs = [m.generation_config for m in task_models.values() if type(m).can_generate()]
        if generation_configs:  # The first causal LM's settings, as loaded with it.
            model.generation_config = generation_configs[0]
        return model

    @classmethod
    def from_pretrained(cls, checkpoint: str, base_model_class: Type[BaseModel],
                        heads: Optional[Mapping[str, HeadSpec]] = None, **kwargs) -> Self:
        """
        Load the body from any checkpoint ``ModelWithHead.from_pretrained`` reads, and the heads:
          - a ``ModelWithHeads`` checkpoint: every stored head (``heads`` may give other head configs, or add heads);
          - a single-task archit checkpoint: its head, named as in ``heads`` (default: the task's class name);
          - a base model or transformers task checkpoint: the ``heads`` given, newly initialised.
        Keyword arguments as in ``ModelWithHead.from_pretrained``, plus ``loss_weights``.
        """
        return load_model_with_heads(cls, checkpoint, base_model_class, heads, **kwargs)

    # Running

    @compat.hide_kwargs_from_signature  # As ModelWithHead.forward: no **kwargs for the Trainer to see.
    def forward(self, input_ids: Optional[Tensor] = None, attention_mask: Optional[Tensor] = None,
                labels: Optional[Mapping[str, Any]] = None, heads: Optional[Sequence[str]] = None,
                output_hidden_states: Optional[bool] = None, inputs_embeds: Optional[Tensor] = None,
                position_ids: Optional[Tensor] = None, token_type_ids: Optional[Tensor] = None,
                past_key_values: Optional[Any] = None, use_cache: Optional[bool] = None,
                cache_position: Optional[Tensor] = None, output_attentions: Optional[bool] = None,
                return_dict: Optional[bool] = None, **kwargs) -> Union[ModelWithHeadsOutput, Tuple[Any, ...]]:
        """Run the body once and the heads ``heads`` (default: all) on its output. ``labels`` maps head names to
        that task's labels; the loss is the ``loss_weights``-weighted sum of the labelled heads' losses. The other
        keyword arguments as in ``ModelWithHead.forward`` (``return_dict=False``: the output's fields that are not
        ``None``, as a tuple)."""
        names = list(self.heads) if heads is None else list(heads)
        unknown = [name for name in names if name not in self.heads]
        if unknown:
            raise KeyError(f"No head named {unknown}; the heads are {list(self.heads)}.")
        labels = dict(labels or {})
        unlabelled = sorted(set(labels) - set(names))
        if unlabelled:
            raise ValueError(f"labels= names heads that do not run: {unlabelled} (running {names}).")
        body_kwargs = bodyKeywords(kwargs, inputs_embeds=inputs_embeds, position_ids=position_ids,
                                   token_type_ids=token_type_ids, past_key_values=past_key_values, use_cache=use_cache,
                                   cache_position=cache_position, output_attentions=output_attentions)
        base_output = self.model(input_ids, attention_mask, do_drop_intermediates=not output_hidden_states,
                                 **body_kwargs, **kwargs)
        mask = fullAttentionMask(attention_mask, input_ids, inputs_embeds)
        logits = {name: self.heads[name](base_output, mask, **kwargs) for name in names}
        losses = {name: self._tasks[name].computeLoss(logits[name], value)
                  for name, value in labels.items() if value is not None}
        loss = self.model.computeLoss()
        for name, value in losses.items():
            loss = loss + self.config.loss_weights[name] * value
        output = ModelWithHeadsOutput(loss=None if isinstance(loss, int) and loss == 0 else loss, logits=logits,
                                      losses=losses, **bodyResults(base_output, bool(output_hidden_states)))
        return output if return_dict is None or return_dict else output.to_tuple()

    @property
    def base_model(self) -> nn.Module:
        """The transformers model under the base model (``RobertaModel``, ...)."""
        return self.model.base_model

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> None:
        """``None``: each LM head has its own output matrix (``asTask(name).get_output_embeddings()``)."""
        return None

    def tie_weights(self, *args, **kwargs) -> None:
        """Tie every LM head whose head config asks for it to the input embeddings."""
        for task in self._tasks.values():
            task.tie_weights()

    # Generating

    def generate(self, *args: Any, head: Optional[str] = None, **kwargs: Any) -> Any:
        """
        Generate with the causal-LM head ``head``: ``asTask(head).generate(...)``, which shares this model's body and
        that head, with this model's ``generation_config``. Arguments as transformers' ``generate``.

        :raises ValueError: without ``head=``, or when that head does not generate (not a causal LM), naming the heads
            that do.
        :raises KeyError: when there is no head of that name.
        """
        generating = self._generating_heads()
        if head is None:
            raise ValueError(f"ModelWithHeads.generate needs head=, the name of a head that generates; the heads that "
                             f"do are {generating} (of {list(self.heads)}).")
        task = self.asTask(head)
        if head not in generating:
            raise ValueError(f"Head '{head}' ({type(task).__name__}) does not generate: it is not a causal language "
                             f"model. The heads that generate are {generating} (of {list(self.heads)}).")
        return task.generate(*args, **kwargs)

    @property
    def generation_config(self) -> Optional[GenerationConfig]:
        """The generation settings of the heads that generate (causal LMs), one object their single-task models share
        (``asTask``); saved as ``generation_config.json``, and read from it on loading. ``None`` while no head
        generates."""
        return self.__dict__.get("_generation_config")

    @generation_config.setter
    def generation_config(self, value: Optional[GenerationConfig]) -> None:
        self.__dict__["_generation_config"] = value
        for name in self._generating_heads():
            self._tasks[name].generation_config = value

    def _generating_heads(self) -> List[str]:
        """The heads whose task generates (transformers' ``can_generate``: the causal LMs)."""
        return [name for name, task in self.__dict__.get("_tasks", {}).items() if type(task).can_generate()]

    # Heads

    def addHead(self, name: str, task: Type[ModelWithHead], head_config: Optional[HeadConfig] = None, *,
                checkpoint: Optional[str] = None, loss: Optional[_Loss] = None, loss_weight: float = 1.0,
                **from_pretrained_kwargs) -> None:
        """Add a head: newly initialised from ``head_config``, or imported from ``checkpoint`` (an archit or
        transformers task checkpoint of a body like this one; its head config is read from it unless given)."""
        if name in self.heads:
            raise KeyError(f"There is already a head named '{name}'; removeHead('{name}') first.")
        _check_head(name, task, head_config)
        if checkpoint is not None:
            donor = task.from_pretrained(checkpoint, type(self.model), head_config, **from_pretrained_kwargs)
            self._check_body_fits(_body_description(donor.model), f"The head in '{checkpoint}'")
            head, head_config = donor.head, donor.config.head_config
            loss = loss if loss is not None else donor.loss_function
        elif head_config is None:
            raise ValueError("addHead needs head_config= for a new head, or checkpoint= to import one.")
        else:
            head = task.buildHead(type(self.model).standardiseConfig(self.model.config), head_config)
        _check_head(name, task, head_config)
        self._place_like_body(head)
        self.config.heads[name] = (task, head_config)
        self.config.loss_weights[name] = float(loss_weight)
        self._register(name, head, loss if loss is not None else task.buildLoss())
        self._tasks[name].tie_weights()

    def removeHead(self, name: str) -> None:
        """Remove a head (and its loss weight)."""
        if name not in self.heads:
            raise KeyError(f"No head named '{name}'; the heads are {list(self.heads)}.")
        del self.heads[name], self.losses[name], self._tasks[name]
        del self.config.heads[name], self.config.loss_weights[name]
        if not self._generating_heads():
            self.generation_config = None

    def asTask(self, name: str) -> ModelWithHead:
        """The single-task model of head ``name`` (its task's class), sharing this model's body, head and loss:
        training one trains the other; ``toHuggingFace()`` exports it where transformers has the class."""
        if name not in self._tasks:
            raise KeyError(f"No head named '{name}'; the heads are {list(self.heads)}.")
        task = self._tasks[name]
        task.train(self.training)
        return task

    def saveHead(self, name: str, directory: str) -> None:
        """Write head ``name`` alone (a fraction of the body's size) with what body it fits: ``loadHead`` on a model
        with another body refuses it."""
        task_model = self.asTask(name)
        tied = {id(p) for p in self.model.parameters()}
        tensors = {key: tensor for key, tensor in self.heads[name].state_dict(keep_vars=True).items()
                   if id(tensor) not in tied}
        task, head_config = self.config.heads[name]
        save_head_files(directory, {"name": name, "task": task_name(task), "head_config": _to_serialisable(head_config),
                                    "tied_to_input_embeddings": task_model.tiesWeights(),
                                    "body": _body_description(self.model)}, tensors)

    def loadHead(self, directory: str, name: Optional[str] = None, loss_weight: float = 1.0) -> str:
        """Add a head written by ``saveHead`` (under ``name``, default its saved name) and return its name. Refuses a
        head whose body differs from this one (model type, hidden size, vocabulary), saying what differs."""
        description, tensors = read_head_files(directory)
        name = name or description["name"]
        self._check_body_fits(description.get("body", {}), f"The head in '{directory}'")
        task, head_config = head_spec_of(description)
        if name in self.heads:
            raise KeyError(f"There is already a head named '{name}'; pass name= or removeHead('{name}') first.")
        head = task.buildHead(type(self.model).standardiseConfig(self.model.config), head_config)
        self._place_like_body(head)
        self.config.heads[name] = (task, head_config)
        self.config.loss_weights[name] = float(loss_weight)
        self._register(name, head, task.buildLoss())
        self._tasks[name].tie_weights()
        tied = {key for key, tensor in head.state_dict(keep_vars=True).items()
                if any(tensor is p for p in self.model.parameters())}
        expected = head.state_dict()
        for key, tensor in tensors.items():
            error = key in expected and wrong_dtype_kind(tensor.dtype, expected[key].dtype,
                                                         os.path.join(directory, HEAD_WEIGHTS_NAME), key,
                                                         f"heads.{name}.{key}")
            if error:
                self.removeHead(name)
                raise error
        missing, unexpected = head.load_state_dict(tensors, strict=False)
        if set(missing) - tied or unexpected:
            self.removeHead(name)
            raise ValueError(f"The head in '{directory}' does not fit {type(head).__name__}: missing "
                             f"{sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}.")
        return name

    def save_pretrained(self, save_directory, max_shard_size: Union[int, str] = "5GB", safe_serialization: bool = True,
                        is_main_process: bool = True, **kwargs) -> None:
        """Write ``config.json`` (the base config and every head's task and config) and the weights (``model._core.*``,
        ``heads.<name>.*``), as ``ModelWithHead.save_pretrained`` does (under FSDP: a collective, on every rank)."""
        save_model_with_head(self, save_directory, max_shard_size=max_shard_size,
                             safe_serialization=safe_serialization, is_main_process=is_main_process, **kwargs)

    # Internals

    def _register(self, name: str, head: nn.Module, loss: _Loss) -> None:
        task, head_config = self.config.heads[name]
        self.heads[name] = head
        self.losses[name] = _without_persistent_state(loss)
        view = task(CombinedConfig(base_model_config=self.model.config, head_config=head_config), self.model, head,
                    self.losses[name])
        self._tasks[name] = view
        if type(view).can_generate():  # The heads that generate share one generation config: the first one's.
            self.generation_config = view.generation_config if self.generation_config is None \
                else self.generation_config

    def _place_like_body(self, head: nn.Module) -> None:
        parameter = next(self.model.parameters())
        head.to(device=parameter.device, dtype=parameter.dtype if parameter.is_floating_point() else None)
        head.train(self.training)

    def _check_body_fits(self, body: Mapping[str, Any], what: str) -> None:
        ours = _body_description(self.model)
        differences = [f"{key}: {body[key]!r} there, {ours[key]!r} here" for key in ours
                       if key in body and body[key] != ours[key]]
        if differences:
            raise ValueError(f"{what} was made for another body: {'; '.join(differences)}.")


def _body_description(model: BaseModel) -> Dict[str, Any]:
    """What a head must agree with in the body it runs on."""
    standard = type(model).standardiseConfig(model.config)
    return {"model_type": getattr(model.config, "model_type", None), "hidden_size": standard.hidden_size,
            "vocab_size": standard.vocab_size}


def _check_head(name: str, task: Type[Any], head_config: Any) -> None:
    """Refuse names that cannot be module names and tasks that cannot share one body pass."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"Head names must be Python identifiers (they name modules: heads.<name>.*), got {name!r}.")
    if not (isinstance(task, type) and issubclass(task, ModelWithHead)):
        raise TypeError(f"Head '{name}': {task!r} is not a task (a ModelWithHead subclass such as "
                        f"ForSingleLabelTokenClassification).")
    if task.forward is not ModelWithHead.forward or task.callBaseModel is not ModelWithHead.callBaseModel:
        raise ValueError(f"Head '{name}': {task.__name__} reshapes its inputs before the body runs (its inputs are not "
                         f"B x L token ids), so it cannot share one body pass with other heads. Use its single-task "
                         f"model.")
    if head_config is not None and not isinstance(head_config, task.headClass().configClass()):
        raise TypeError(f"Head '{name}': {task.__name__} takes a {task.headClass().configClass().__name__}, got "
                        f"{type(head_config).__name__}.")


def _checked_weights(loss_weights: Optional[Mapping[str, float]], heads: Mapping[str, Any]) -> Dict[str, float]:
    unknown = sorted(set(loss_weights or {}) - set(heads))
    if unknown:
        raise KeyError(f"loss_weights names heads that are not built: {unknown}.")
    return {name: float((loss_weights or {}).get(name, 1.0)) for name in heads}


