"""
The three abstract classes that wrap transformers models and put a head on top, with ``from_pretrained`` and
``save_pretrained``:
    - ``BaseModel`` adapts a transformers base model (the "core") to one interface.
    - ``Head`` turns the base model's embeddings into logits.
    - ``ModelWithHead`` runs a ``BaseModel`` and then a ``Head``, and computes the task's loss.

Everything that constructs instances is a class method, because ``from_pretrained`` must build the model before it has
an instance. Classes are parameterised by their config classes (``PC`` for the base model's transformers config,
``HC`` for the head config).

Subclasses declare what they are made of with class attributes, which the published class methods read:
    - ``BaseModel``: ``config_class`` and ``core_class`` (read by ``configClass()`` and ``coreClass()``);
    - ``Head``: ``config_class`` (``configClass()``) and, where transformers has a head computing the same,
      ``hf_equivalent_suffix`` (``hfEquivalentSuffix()``);
    - ``ModelWithHead``: ``head_class`` (``headClass()``) and, when the loss is not a cross-entropy, ``loss_class``
      (``buildLoss()``).
Overriding the class methods instead (the published ArchIt's style) works as before, and is the way to go when the
answer must be computed (from the head config, say). Of a class attribute and the class method reading it, the one
declared by the most derived class wins: a subclass that sets only ``config_class`` gets it from ``configClass()`` even
where its parent overrode ``configClass()``.
"""
import copy
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, Optional, Tuple, Type, Union

import torch
from torch import FloatTensor, Tensor
from torch.nn import CrossEntropyLoss, Module
from torch.nn.modules.loss import _Loss
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndNoAttention as AllHiddenStatesAndPooling
from transformers.utils import ModelOutput
from typing_extensions import Self

from .. import _compat as compat
from ..loading import (
    load_base_model,
    load_model_from_parts,
    load_model_with_head,
    save_model_with_head,
    save_through_transformers,
    to_hugging_face,
)
from ..loading.checkpointcode import save_code_of
from ..loading.equivalents import family_head_keys
from ..loading.keys import CORE_PATH
from .configs import HC, PC, BaseModelConfig, CombinedConfig, HeadConfig
from .mixins import LossState, StatefulLossMixin
from .standardisation import read_standard_fields

Tensors = Tuple[Tensor, ...]
OneOrMoreTensors = Union[Tensor, Tensors]
HeadOutput = OneOrMoreTensors  # A head can return several tensors (e.g. QA with answerability).

__all__ = ["BaseModel", "BaseModelConfig", "Head", "HeadConfig", "ModelWithHead", "ModelWithHeadOutput",
           "CombinedConfig", "AllHiddenStatesAndPooling", "BodyOutput", "Tensors", "OneOrMoreTensors",
           "HeadOutput", "PC", "HC", "BODY_KEYWORDS"]

BODY_KEYWORDS = ("inputs_embeds", "position_ids", "token_type_ids", "past_key_values", "cache", "use_cache",
                 "cache_position", "output_attentions")
"""The keyword arguments of transformers' task models that a model-with-head passes to its body (and not to its head),
besides ``input_ids``, ``attention_mask`` and ``output_hidden_states``. ``None`` means "the body's default" and is not
passed, so that a body whose forward lacks the argument is not bothered by it."""


@dataclass
class BodyOutput(AllHiddenStatesAndPooling):
    """What a ``BaseModel`` returns: ``AllHiddenStatesAndPooling``, plus the attention weights (``attentions``, when
    ``output_attentions=True``) and the key-value cache (``past_key_values``, when ``use_cache=True``) of the body,
    and its cross-attention weights where the core returns them (``cross_attentions``: GPT-2's, BERT's)."""
    attentions: Optional[Tuple[Tensor, ...]] = None
    cross_attentions: Optional[Tuple[Tensor, ...]] = None
    # The key-value cache, under the installed release's name for it (compat.CACHE_NAME: "cache" from 5.2x on).
    if compat.CACHE_NAME == "cache":
        cache: Optional[Any] = None
    else:
        past_key_values: Optional[Any] = None

# Names the published ArchIt's abstracts module had by importing them, which code imports from here (LaMoTO:
# ``from archit.instantiation.abstracts import Tensors, Tensor``; ``abstracts.dataclass_from_dict``).
from typing import TypeVar as TypeVar  # noqa: E402

from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present as consume_prefix_in_state_dict_if_present  # noqa: E402,E501

from ..loading.configs import dataclass_from_dict as dataclass_from_dict  # noqa: E402


class BaseModel(compat.PreTrainedWrapper, Generic[PC], ABC):
    """
    Adapter giving every transformers base model the same signature: ``forward(input_ids, attention_mask)`` returns
    ``AllHiddenStatesAndPooling``. The core is built from the config and is reachable as ``.base_model``.

    A subclass declares
        - ``config_class``: the transformers config class of the core (``RobertaConfig``, ...), and
        - ``core_class``: the transformers base model class (``RobertaModel``, ...),
    or overrides ``configClass()``/``coreClass()`` (``config_class``, which transformers reads, is then set from
    ``configClass()``); and overrides ``standardiseConfig`` when the family's config fields differ in name or meaning
    from ``archit.instantiation.standardisation.FIELD_NAMES``. A ``configClass()`` that raises ``ImportError`` (a family
    the installed transformers lacks) leaves ``config_class`` ``None``, so that the class can still be defined.
    """

    config_class: Optional[Type[PretrainedConfig]] = None  # Also transformers' attribute.
    core_class: Optional[Type[PreTrainedModel]] = None

    def __init__(self, config: PC):
        super().__init__(config)
        self._core = self.buildCore(config)
        # Decoders keep a key-value cache by default; unless asked (generation passes use_cache=True), a model-with-head
        # does not, so that training and scoring do not pay its memory.
        self._no_cache = {"use_cache": False} if "use_cache" in inspect.signature(self._core.forward).parameters else {}
        self.supports_gradient_checkpointing = self._core.supports_gradient_checkpointing
        compat.adopt_core_flags(self, self._core)  # What transformers reads on a model (cache, attention) is the core's.
        self._accumulated_loss = LossState()  # Loss terms added by modules inside the core (StatefulLossMixin).
        self.activateCoreLoss()

    def __init_subclass__(cls, **kwargs):
        _read_declared_attributes(cls, BaseModel, config_class="configClass", core_class="coreClass")
        super().__init_subclass__(**kwargs)  # transformers 5 copies config_class into every subclass: read cls's first.
        try:
            cls.config_class = cls.configClass()  # None for abstract subclasses.
        except ImportError:  # The family is missing from the installed transformers; using the class raises the error.
            cls.config_class = None

    def forward(self, input_ids: Optional[Tensor] = None, attention_mask: Optional[Tensor] = None,
                do_drop_intermediates: bool = True, **kwargs: Any) -> BodyOutput:
        """
        Run the core. ``do_drop_intermediates=False`` (or ``output_hidden_states=True``) keeps every layer's hidden
        states. Other keyword arguments go to the core as transformers' base models take them (``inputs_embeds``,
        ``position_ids``, ``token_type_ids``, ``output_attentions``, ``past_key_values``/``use_cache``, ...); those that
        are ``None`` are left out (the core's default). ``return_dict`` is accepted and ignored: the output is always a
        ``BodyOutput``.
        """
        kwargs.pop("return_dict", None)
        output_hidden_states = kwargs.pop("output_hidden_states", None)
        if output_hidden_states is None:
            output_hidden_states = not do_drop_intermediates
        arguments = {**self._no_cache, **{name: value for name, value in kwargs.items() if value is not None}}
        output = self._core(input_ids=input_ids, attention_mask=attention_mask, return_dict=True,
                            output_hidden_states=output_hidden_states, **arguments)
        return BodyOutput(last_hidden_state=output.last_hidden_state,
                               hidden_states=getattr(output, "hidden_states", None),
                               pooler_output=getattr(output, "pooler_output", None),
                               attentions=getattr(output, "attentions", None),
                               cross_attentions=getattr(output, "cross_attentions", None),
                               **{compat.CACHE_NAME: getattr(output, compat.CACHE_NAME, None)})

    def __call__(self, *args, **kwargs) -> BodyOutput:
        return super().__call__(*args, **kwargs)

    @property
    def base_model(self) -> PreTrainedModel:
        """The transformers model this base model wraps (``RobertaModel``, ...)."""
        return self._core

    def get_input_embeddings(self) -> Module:
        return self._core.get_input_embeddings()

    def set_input_embeddings(self, value: Module) -> None:
        self._core.set_input_embeddings(value)

    def activateCoreLoss(self) -> None:
        """Let modules of the core that add loss terms (``StatefulLossMixin``) add them to this model's loss.
        Override with an empty body to keep the core's loss terms out of the task loss."""
        def register(module: Module):
            if isinstance(module, StatefulLossMixin):
                module.registerLoss(self._accumulated_loss)
        self._core.apply(register)

    def computeLoss(self) -> Union[Tensor, int]:
        """The loss terms accumulated by the core since the last call (0 if none); resets the accumulator."""
        return self._accumulated_loss.compute()

    def save_pretrained(self, save_directory, *args, is_main_process: bool = True, **kwargs) -> None:
        """transformers' ``save_pretrained`` (the core's ``config.json``, the weights as ``_core.*``), plus the code
        files of a core built from checkpoint code (``trust_remote_code=True``), so that the folder loads again
        wherever it is copied. Crash-consistent, as ``ModelWithHead.save_pretrained``: transformers writes into a
        staging folder, and the files are published together, with their checksums (``save_through_transformers``).
        Only the main process writes (``is_main_process``)."""
        if not is_main_process:
            return
        if kwargs.get("push_to_hub"):
            raise NotImplementedError("archit does not push to the hub: save, then use huggingface_hub's upload_folder.")

        def write(staging: str) -> None:
            save_code_of(self.config, self._core, staging)
            super(BaseModel, self).save_pretrained(staging, *args, **kwargs)

        save_through_transformers(save_directory, write, variant=kwargs.get("variant"))

    # Class methods

    @classmethod
    def from_pretrained(cls, checkpoint: str, **kwargs) -> Self:
        """
        Load the base model alone from a bare base model checkpoint, a transformers task checkpoint or an archit
        checkpoint. Keyword arguments as in ``ModelWithHead.from_pretrained`` (``trust_remote_code=True`` included).
        """
        return load_base_model(cls, checkpoint, **kwargs)

    @classmethod
    def from_config(cls, config: Union[CombinedConfig, PC]) -> Self:
        return cls(config.base_model_config if isinstance(config, CombinedConfig) else config)

    @classmethod
    def configClass(cls) -> Optional[Type[PC]]:
        """The transformers config class of the core (``RobertaConfig``, ...): ``config_class`` (``None`` when the class
        declares none, as abstract ones)."""
        return cls.config_class

    @classmethod
    def coreClass(cls) -> Type[PreTrainedModel]:
        """The transformers base model class (``RobertaModel``, ...): ``core_class``."""
        return _declared(cls, "core_class", "coreClass")

    @classmethod
    def buildCore(cls, raw_config: PC) -> PreTrainedModel:
        """Build the transformers base model from its config, leaving out its pooler where the core class can do
        without one (``add_pooling_layer=False``): heads pool for themselves."""
        return build_without_pooler(cls.coreClass(), raw_config)

    @classmethod
    def standardiseConfig(cls, raw_config: PC) -> BaseModelConfig:
        """The core's config, read into the standard ``BaseModelConfig`` under the names the families use
        (``archit.instantiation.standardisation.FIELD_NAMES``); override for a family whose fields differ in meaning."""
        return read_standard_fields(raw_config)

    @classmethod
    def hfHeadKeys(cls, raw_config: Optional[PretrainedConfig] = None) -> dict:
        """
        Where transformers' task models of this family keep the weights of heads that compute what an archit head
        computes: ``{hfEquivalentSuffix: {transformers key prefix: archit head key prefix}}``. Loading such a task
        checkpoint imports its head; ``ModelWithHead.toHuggingFace`` exports to it. The family is ``raw_config``'s
        ``model_type`` (default: this class's config class's); the table is ``archit.loading.equivalents``.
        """
        model_type = getattr(raw_config, "model_type", None) or getattr(cls.configClass(), "model_type", None)
        return family_head_keys(model_type)

    @classmethod
    def hfArchitectureSuffixes(cls) -> dict:
        """transformers architecture-name suffixes that mean the same head as another suffix: GPT-2-era causal LMs are
        called ``XLMHeadModel`` (``GPT2LMHeadModel``, ``OpenAIGPTLMHeadModel``) rather than ``XForCausalLM``."""
        return {"LMHeadModel": "ForCausalLM"}


def build_without_pooler(core_class: Type[PreTrainedModel], raw_config: PretrainedConfig) -> PreTrainedModel:
    """``core_class(raw_config)``, with ``add_pooling_layer=False`` when the class takes that argument (BERT, RoBERTa,
    CANINE, ...)."""
    if "add_pooling_layer" in inspect.signature(core_class.__init__).parameters:
        return core_class(raw_config, add_pooling_layer=False)
    return core_class(raw_config)


class Head(Module, Generic[HC], ABC):
    """
    Turns a base model's output (``AllHiddenStatesAndPooling``) into logits.

    A subclass implements ``__init__(base_config, head_config)`` (calling ``super().__init__`` first and ``post_init()``
    last) and ``forward``, and declares
        - ``config_class``: its head config class (a ``HeadConfig`` dataclass);
        - ``hf_equivalent_suffix``: the suffix of the transformers ``XForY`` classes whose head computes the same
          (``"ForTokenClassification"``, ...), when there are such classes (default ``"/"``: none). When the answer
          depends on the head config, override ``hfEquivalentSuffix(head_config)`` instead;
    and overrides ``assertConfigConstraints`` when some configs cannot make the head (by default every config can).
    Overriding ``configClass()`` instead of setting ``config_class`` works too, as in the published ArchIt.
    """

    config_class: Optional[Type[HeadConfig]] = None
    hf_equivalent_suffix: str = "/"

    def __init_subclass__(cls, **kwargs):
        _read_declared_attributes(cls, Head, config_class="configClass", hf_equivalent_suffix="hfEquivalentSuffix")
        super().__init_subclass__(**kwargs)

    def __init__(self, base_config: BaseModelConfig, head_config: HC):
        super().__init__()
        self.assertConfigConstraints(base_config, head_config)

    def post_init(self) -> None:
        """Initialise every parameter of the head. Call at the end of ``__init__``."""
        self.apply(self._init_weights)

    def _init_weights(self, module: Module) -> None:
        if any(p.is_meta for p in module.parameters(recurse=False)):
            return  # Built on the meta device to be filled from a checkpoint; what it lacks is initialised then.
        with torch.no_grad():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(mean=0.0, std=0.02)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.LayerNorm):
                module.bias.zero_()
                module.weight.fill_(1.0)

    @abstractmethod
    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor, **kwargs) -> HeadOutput:
        pass

    def __call__(self, *args, **kwargs) -> HeadOutput:
        return super().__call__(*args, **kwargs)

    @classmethod
    def fromConfigs(cls, base_config: BaseModelConfig, head_config: HC) -> Self:
        """The one way heads are built, so that no head's constructor takes more than these two arguments."""
        return cls(base_config, head_config)

    @classmethod
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: HC) -> None:
        """Raise ``ValueError`` when the configs cannot make this head. By default every config can."""

    @classmethod
    def configClass(cls) -> Type[HC]:
        """The head's config class: ``config_class``."""
        return _declared(cls, "config_class", "configClass")

    @classmethod
    def hfEquivalentSuffix(cls, head_config: Optional[HC] = None) -> str:
        """
        Suffix of the transformers ``XForY`` classes whose head computes the same as this head (configured by
        ``head_config``, when the answer depends on it), or ``"/"`` when there is none: ``hf_equivalent_suffix``.
        """
        return cls.hf_equivalent_suffix


@dataclass
class ModelWithHeadOutput(ModelOutput):
    """Loss first and logits second, as in transformers; then, when asked for, what transformers' task models return
    besides (``past_key_values`` with ``use_cache=True``, ``hidden_states`` with ``output_hidden_states=True``,
    ``attentions`` with ``output_attentions=True``: the body's; ``cross_attentions`` for the tasks whose transformers
    equivalents return them, ``ModelWithHead.returns_cross_attentions``), and the body's whole output
    (``base_model_output``, with ``output_hidden_states=True``, as in the published ArchIt)."""
    loss: Optional[Tensor] = None
    logits: OneOrMoreTensors = None
    base_model_output: Optional[AllHiddenStatesAndPooling] = None
    if compat.CACHE_NAME == "cache":  # The release's name for the key-value cache (see BodyOutput).
        cache: Optional[Any] = None
    else:
        past_key_values: Optional[Any] = None
    hidden_states: Optional[Tuple[Tensor, ...]] = None
    attentions: Optional[Tuple[Tensor, ...]] = None
    cross_attentions: Optional[Tuple[Tensor, ...]] = None

    def transformersTuple(self, logits: Optional[Tuple[Any, ...]] = None) -> Tuple[Any, ...]:
        """The output as transformers' task models return it with ``return_dict=False``: ``(loss, logits, cache,
        hidden_states, attentions, cross_attentions)``, leaving out what is ``None``. ``logits``: what stands for the
        logits there, as transformers' equivalent task model returns them (``ModelWithHead.transformersLogits``:
        extractive QA's start and end logits, two tensors); default ``(self.logits,)``."""
        logits = (self.logits,) if logits is None else tuple(logits)
        return tuple(value for value in (self.loss, *logits, getattr(self, compat.CACHE_NAME), self.hidden_states,
                                         self.attentions, self.cross_attentions) if value is not None)


class PreTrainedModelUnderTasks(compat.PreTrainedWrapper):
    """
    What ``ModelWithHead`` inherits from transformers' ``PreTrainedModel``, with its ``from_pretrained`` meaning what it
    meant under the published ArchIt: ``super(ModelWithHead, Task).from_pretrained(checkpoint, base_model, head, loss,
    head_config=..., base_model_config_class=..., head_config_class=...)`` (how the published
    ``ModelWithHead.from_pretrained`` reached transformers' loader, and how code that changes a task's loss, such as
    LaMoTO's class-weighted token classification, still calls it) loads the checkpoint into a model of ``Task`` with
    those parts' classes and that loss, through archit's loader on every transformers release.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, *model_args: Any, **kwargs: Any) -> Self:
        return load_model_from_parts(cls, pretrained_model_name_or_path, model_args, kwargs)


class ModelWithHead(PreTrainedModelUnderTasks, Generic[PC, HC], ABC):
    """
    A ``BaseModel`` (``.model``) with a ``Head`` (``.head``) and a loss. Subclasses (the tasks) name the head and the
    loss; the user brings the base model class and a head config.

    A subclass declares
        - ``head_class``: the class of its head;
        - ``loss_class``: the class of its default loss, built without arguments (default ``CrossEntropyLoss``;
          override ``buildLoss()`` for a loss that needs arguments);
    and overrides ``computeLoss(logits, labels)`` unless the default fits: ``loss_function`` of every position's
    logits and label at once (``flatLoss``: logits ... x C against labels ...; -100 is ignored by the cross-entropy),
    as for classifying tokens or texts into one class and for masked language modelling. Overriding ``headClass()`` and
    ``buildLoss()`` instead of setting the attributes works too, as in the published ArchIt.

    Where transformers' equivalent task model takes its labels under other names than ``labels`` (extractive QA:
    ``start_positions``, ``end_positions``), the task declares them in ``label_keywords`` and turns them into its
    ``labels`` in ``labelsFromKeywords``, so that tools calling the model as transformers' (peft's ``QUESTION_ANS``) can
    pass them; and where transformers' tuple output (``return_dict=False``) holds the logits as several tensors, the task
    says so in ``transformersLogits``. Neither needs another ``forward``.

    The head is the submodule ``head`` (its parameters ``head.*``): name it in peft's ``modules_to_save=["head"]`` to
    train and save it next to adapters of the body.
    """

    config_class = CombinedConfig  # transformers' attribute: the config class of the whole model.
    head_class: Optional[Type[Head]] = None
    loss_class: Type[_Loss] = CrossEntropyLoss
    base_model_prefix = CORE_PATH.rstrip(".")
    accepts_loss_kwargs = False  # See forward().
    returns_cross_attentions: bool = False
    """Whether the output carries the body's ``cross_attentions`` (where the core returns them), as transformers'
    equivalent task models do (their causal LMs: GPT-2's ``CausalLMOutputWithCrossAttentions``)."""
    label_keywords: Tuple[str, ...] = ()
    """The keyword arguments under which transformers' equivalent task model takes this task's labels when it does not
    take ``labels`` (``("start_positions", "end_positions")`` for extractive QA); ``forward`` takes them out of its
    keyword arguments (they never reach the body) and gives them to ``labelsFromKeywords``."""

    def __init_subclass__(cls, **kwargs):
        _read_declared_attributes(cls, ModelWithHead, head_class="headClass", loss_class="buildLoss")
        super().__init_subclass__(**kwargs)

    def __init__(self, combined_config: CombinedConfig, model: BaseModel, head: Head, loss: _Loss):
        """Use ``fromModelAndHeadConfig`` or ``from_pretrained`` rather than this constructor."""
        super().__init__(combined_config)
        if not isinstance(head, self.headClass()):
            raise TypeError(f"{self.__class__.__name__} needs a {self.headClass().__name__}, got {type(head).__name__}.")
        self.supports_gradient_checkpointing = model.base_model.supports_gradient_checkpointing
        compat.adopt_core_flags(self, model.base_model)  # What transformers reads on a model (cache, attention).
        self.model: BaseModel = model
        self.head: Head = head
        self._loss_function = _without_persistent_state(loss)
        # Written to config.json as "task", so that a checkpoint says which task it is (e.g. for ModelWithHeads).
        object.__setattr__(combined_config, "task", f"{type(self).__module__}:{type(self).__qualname__}")
        self.tie_weights()

    # The Trainer must not pass num_items_in_batch (our losses average themselves): 4.48+ read accepts_loss_kwargs,
    # 4.47 look for ** in forward's signature, which the decorator hides.
    @compat.hide_kwargs_from_signature
    def forward(self, input_ids: Optional[Tensor] = None, attention_mask: Optional[Tensor] = None,
                labels: Optional[OneOrMoreTensors] = None, output_hidden_states: Optional[bool] = None,
                inputs_embeds: Optional[Tensor] = None, position_ids: Optional[Tensor] = None,
                token_type_ids: Optional[Tensor] = None, past_key_values: Optional[Any] = None,
                use_cache: Optional[bool] = None, cache_position: Optional[Tensor] = None,
                output_attentions: Optional[bool] = None, return_dict: Optional[bool] = None,
                **kwargs) -> Union[ModelWithHeadOutput, Tuple[Any, ...]]:
        """
        The body, then the head, then the loss when ``labels`` are given. Takes what transformers' task models take:
        ``inputs_embeds`` instead of ``input_ids``, ``position_ids``, ``token_type_ids``, ``past_key_values`` and
        ``use_cache`` (a key-value cache, kept only when asked for), ``cache_position``, ``output_hidden_states``,
        ``output_attentions`` (go to the body; their results come back in the output), ``return_dict=False`` (a tuple,
        as transformers': ``ModelWithHeadOutput.transformersTuple``). The task's ``label_keywords``, when given, are its
        labels (``start_positions``/``end_positions`` for extractive QA, as transformers'). Other keyword arguments go
        to the body and to the head. Without ``attention_mask`` every position counts.
        """
        labels = keywordLabels(self, labels, kwargs)
        body_kwargs = bodyKeywords(kwargs, inputs_embeds=inputs_embeds, position_ids=position_ids,
                                   token_type_ids=token_type_ids, past_key_values=past_key_values, use_cache=use_cache,
                                   cache_position=cache_position, output_attentions=output_attentions)
        base_output = self.callBaseModel(input_ids, attention_mask, do_drop_intermediates=not output_hidden_states,
                                         **body_kwargs, **kwargs)
        logits = self.head(base_output, fullAttentionMask(attention_mask, input_ids, inputs_embeds), **kwargs)
        loss = self.model.computeLoss()
        if labels is not None:
            loss = loss + self.computeLoss(logits, labels)
        cross_attentions = getattr(base_output, "cross_attentions", None) if self.returns_cross_attentions else None
        output = ModelWithHeadOutput(logits=logits, loss=None if isinstance(loss, int) and loss == 0 else loss,
                                     cross_attentions=cross_attentions,
                                     **bodyResults(base_output, bool(output_hidden_states)))
        return output if return_dict is None or return_dict else output.transformersTuple(self.transformersLogits(logits))

    def __call__(self, *args, **kwargs) -> ModelWithHeadOutput:
        return super().__call__(*args, **kwargs)

    def callBaseModel(self, input_ids: Optional[Tensor], attention_mask: Optional[Tensor], do_drop_intermediates: bool,
                      **kwargs) -> AllHiddenStatesAndPooling:
        return self.model(input_ids, attention_mask, do_drop_intermediates=do_drop_intermediates, **kwargs)

    @property
    def base_model(self) -> PreTrainedModel:
        """The transformers model under the base model (``RobertaModel``, ...)."""
        return self.model.base_model

    @property
    def loss_function(self) -> _Loss:
        return self._loss_function

    def computeLoss(self, logits: OneOrMoreTensors, labels: OneOrMoreTensors) -> FloatTensor:
        """The task loss of ``logits`` against ``labels``; by default ``flatLoss`` (labels shaped as the logits without
        their last dimension)."""
        return flatLoss(self.loss_function, logits, labels)

    def labelsFromKeywords(self, **keyword_labels: Tensor) -> OneOrMoreTensors:
        """The task's ``labels`` made of the keyword arguments named in ``label_keywords`` (every one of them given);
        a task that declares ``label_keywords`` overrides this."""
        raise NotImplementedError(f"{type(self).__name__} declares label_keywords={self.label_keywords} but does not "
                                  f"say how they make its labels: override labelsFromKeywords.")

    def transformersLogits(self, logits: OneOrMoreTensors) -> Tuple[Any, ...]:
        """The logits as the tensors that stand for them in transformers' tuple output (``return_dict=False``): by
        default the logits as one element; a task whose transformers equivalent returns several (extractive QA: start
        and end logits) overrides this."""
        return (logits,)

    def get_input_embeddings(self) -> Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> Optional[Module]:
        """The head's output matrix, for heads that can be tied to the input embeddings; ``None`` otherwise."""
        return None

    def tiesWeights(self) -> bool:
        """Whether the head's output matrix is tied to the input embeddings (``tie_weights`` in the head config)."""
        return self.get_output_embeddings() is not None and bool(getattr(self.config.head_config, "tie_weights", False))

    def tie_weights(self, *args, **kwargs) -> None:
        """Make the head's output matrix the input embedding matrix, when the head config asks for tying."""
        if not self.tiesWeights():
            return
        output = self.get_output_embeddings()
        if output is None:
            raise TypeError(f"{type(self).__name__}'s head config asks to tie weights, but its head has no output "
                            f"embeddings (get_output_embeddings() is None).")
        output.weight = self.get_input_embeddings().weight

    def __getattr__(self, item: str):
        """Also resolves dotted paths (``model._core``), as the published ArchIt did."""
        if "." not in item:
            return super().__getattr__(item)
        obj = self
        for name in item.split("."):
            obj = getattr(obj, name)
        return obj

    def save_pretrained(self, save_directory, max_shard_size: Union[int, str] = "5GB",
                        safe_serialization: bool = True, is_main_process: bool = True, **kwargs) -> None:
        """
        Write ``config.json`` (nested ``base_model_config`` and ``head_config``) and the weights (``model._core.*``,
        ``head.*``) as safetensors (default) or ``pytorch_model.bin``, sharded above ``max_shard_size``. A tied output
        matrix is stored once. The base model's tensors are written in the layout the installed transformers' own
        ``save_pretrained`` writes (on 5.x with its load-time conversions reversed: the original 4.x layout), so the
        checkpoint loads on every transformers release. ``variant="fp16"`` names the files as transformers does
        (``model.fp16.safetensors``), for ``from_pretrained(..., variant="fp16")``.

        Only the main process writes: pass ``is_main_process=False`` on the others (as transformers takes it). A model
        that FSDP shards (FSDP1 or FSDP2, as ``accelerator.unwrap_model`` gives it) is saved by a collective: call
        ``save_pretrained`` on every rank; the full weights are gathered through torch's distributed state-dict API,
        rank 0 writes them (the same files as an unsharded save) and every rank returns once they are committed. With
        ``state_dict=`` (weights gathered already, as the ``Trainer`` does) the main process writes them alone.
        """
        save_model_with_head(self, save_directory, max_shard_size=max_shard_size,
                             safe_serialization=safe_serialization, is_main_process=is_main_process, **kwargs)

    def toHuggingFace(self, share_weights: bool = False, verify: bool = True) -> PreTrainedModel:
        """
        The transformers task model that computes what this model computes (``ForMaskedLM`` on ``RobertaBaseModel``
        gives a ``RobertaForMaskedLM``, ``ForSingleLabelTokenClassification`` on ``AutoBaseModel`` of a Llama checkpoint
        a ``LlamaForTokenClassification``, ...), holding copies of this model's weights (the same tensors with
        ``share_weights=True``). Its ``save_pretrained`` output loads in plain transformers.

        :param verify: run both models on a few token ids and check that their logits agree (atol 1e-4).
        :raises NotImplementedError: when transformers has no class computing what this head computes (the mean-pooling
            sequence head, dependency parsing, ...), naming what is missing.
        """
        return to_hugging_face(self, share_weights=share_weights, verify=verify)

    # Class methods

    @classmethod
    def headClass(cls) -> Type[Head]:
        """The head class of this task: ``head_class``."""
        return _declared(cls, "head_class", "headClass")

    @classmethod
    def buildHead(cls, base_model_config: BaseModelConfig, head_config: HC) -> Head:
        return cls.headClass().fromConfigs(base_model_config, head_config)

    @classmethod
    def buildLoss(cls) -> _Loss:
        """The task's default loss module: ``loss_class()``."""
        return cls.loss_class()

    @classmethod
    def fromModelAndHeadConfig(cls, base_model: BaseModel, head_config: HC, loss: Optional[_Loss] = None) -> Self:
        """Put a newly initialised head on an existing base model (``loss`` replaces the task's default loss). The model
        gets a copy of ``head_config``, in which the head records what it chose from the base model (the MLM head's
        epsilon and activation), so that one config can build heads on different bodies."""
        head_config = copy.copy(head_config)
        return cls(CombinedConfig(base_model_config=base_model.config, head_config=head_config),
                   base_model,
                   cls.buildHead(base_model.__class__.standardiseConfig(base_model.config), head_config),
                   loss if loss is not None else cls.buildLoss())

    @classmethod
    def from_pretrained(cls, checkpoint: str, base_model_class: Type[BaseModel],  # type: ignore[override]
                        head_config: Optional[HC] = None, **kwargs) -> Self:  # The published ArchIt's signature.
        """
        Load from a local folder or hub id holding
          - a base model checkpoint (``embeddings.*`` or ``roberta.embeddings.*``): the head is new (``head_config`` needed);
          - a transformers task checkpoint (``RobertaForTokenClassification``, ...): its head is imported where it
            computes the same as this task's head;
          - an archit checkpoint (ours or the published ArchIt's): head config and weights restored; a ``head_config``
            given here wins.
        The checkpoint is read as the installed transformers reads it: its own conversion rules run first (5.x fuses
        per-expert MoE tensors, renames heads and prefixes), then archit's key renaming.

        Keyword arguments as in transformers: ``dtype``/``torch_dtype``, ``device_map``, ``attn_implementation``,
        ``experts_implementation`` (how mixture-of-experts layers compute, ``"eager"``, ``"grouped_mm"``, ...: 5.x only,
        refused with a ``TypeError`` on 4.x as transformers 4.x refuse it; without these two, the body runs what
        transformers' own ``from_pretrained`` picks on this release, and ``model.config`` reports it),
        ``ignore_mismatched_sizes``, ``output_loading_info`` (adds ``converted_keys``), ``variant``, ``key_mapping``
        (``{regex: replacement}`` for checkpoint keys), ``cache_dir``, ``revision``, ``local_files_only``, ``token``,
        ``subfolder``, ``trust_remote_code`` (build a base model from the code that ships with the checkpoint, its
        ``auto_map``; without it such a checkpoint is refused unless transformers has its ``model_type``, and none of
        its code is imported), ``code_revision``; and archit's own: ``loss`` (replaces the task's loss),
        ``ignore_unplaced_weights`` (initialise base weights anew even though checkpoint tensors were left unused, which
        is otherwise an error). Other keyword arguments set fields of the base model's config.
        """
        return load_model_with_head(cls, checkpoint, base_model_class, head_config, **kwargs)


def keywordLabels(task: "ModelWithHead", labels: Optional[OneOrMoreTensors],
                  kwargs: dict) -> Optional[OneOrMoreTensors]:
    """The labels of one forward pass: ``labels``, or, when the task's ``label_keywords`` are given (taken out of
    ``kwargs``, the other keyword arguments, so that they do not reach the body), ``task.labelsFromKeywords`` of them.
    Keywords given as ``None`` count as not given (peft passes ``start_positions=None``)."""
    given = {name: kwargs.pop(name) for name in task.label_keywords if name in kwargs}
    given = {name: value for name, value in given.items() if value is not None}
    if not given:
        return labels
    if labels is not None:
        raise ValueError(f"{type(task).__name__} got both labels= and {', '.join(f'{n}=' for n in given)}: pass its "
                         f"labels one way.")
    missing = [name for name in task.label_keywords if name not in given]
    if missing:
        raise ValueError(f"{type(task).__name__} got {', '.join(f'{n}=' for n in given)} without "
                         f"{', '.join(f'{n}=' for n in missing)}: its labels are {', '.join(task.label_keywords)} "
                         f"together (or labels=).")
    return task.labelsFromKeywords(**given)


def bodyKeywords(extra: dict, past_key_values: Any = None, **keywords: Any) -> dict:
    """The keyword arguments for the body among ``keywords``: those that are not ``None`` (see ``BODY_KEYWORDS``), the
    key-value cache under the installed release's name for it (``past_key_values``, or ``cache`` from 5.2x on, which
    is taken out of ``extra``, the other keyword arguments, where generation passes it)."""
    cache = extra.pop("cache", None) if past_key_values is None else past_key_values
    keywords[compat.CACHE_NAME] = cache
    return {name: value for name, value in keywords.items() if value is not None}


def bodyResults(base_output: AllHiddenStatesAndPooling, output_hidden_states: bool) -> dict:
    """What of the body's output a model-with-head's output carries: its cache, and its hidden states and attention
    weights where they were computed (the whole body output too, as ``base_model_output``, with
    ``output_hidden_states``)."""
    return {compat.CACHE_NAME: getattr(base_output, compat.CACHE_NAME, None),
            "hidden_states": base_output.hidden_states if output_hidden_states else None,
            "attentions": getattr(base_output, "attentions", None),
            "base_model_output": base_output if output_hidden_states else None}


def fullAttentionMask(attention_mask: Optional[Tensor], input_ids: Optional[Tensor],
                      inputs_embeds: Optional[Tensor]) -> Tensor:
    """``attention_mask``, or, when it is ``None``, ones for every position of ``input_ids`` (or ``inputs_embeds``):
    what heads that pool get when the caller gives no mask (the body then decides for itself, as transformers')."""
    if attention_mask is not None:
        return attention_mask
    reference = input_ids if input_ids is not None else inputs_embeds
    if reference is None:
        raise ValueError("Pass input_ids or inputs_embeds.")
    shape = reference.shape if input_ids is not None else reference.shape[:-1]
    return torch.ones(shape, dtype=torch.long, device=reference.device)


def flatLoss(loss_function: _Loss, logits: Tensor, labels: Tensor) -> FloatTensor:
    """The loss of every labelled position at once: logits ... x C and labels ... flattened to N x C and N."""
    return loss_function(logits.reshape(-1, logits.size(-1)), labels.to(logits.device).reshape(-1))


def _declared(cls: Type[Any], attribute: str, method: str) -> Any:
    """``cls``'s class attribute ``attribute``; ``NotImplementedError`` when the class leaves it ``None``."""
    value = getattr(cls, attribute)
    if value is None:
        raise NotImplementedError(f"{cls.__name__} does not declare its {attribute}: set {attribute} = ... in the class "
                                  f"(or override {method}()).")
    return value


def _read_declared_attributes(cls: Type[Any], owner: Type[Any], **methods: str) -> None:
    """
    For each ``attribute=method`` pair: where ``cls``'s own body sets the class attribute but does not override the
    class method that reads it, make the method ``owner``'s (which reads the attribute) even if a parent of ``cls``
    overrode it: the most derived declaration wins. Call before anything (transformers' ``__init_subclass__``) writes
    attributes into ``cls``.
    """
    for attribute, method in methods.items():
        default = vars(owner)[method]
        if attribute in vars(cls) and method not in vars(cls) \
                and getattr(getattr(cls, method), "__func__", None) is not default.__func__:
            setattr(cls, method, default)


def _without_persistent_state(loss: _Loss) -> _Loss:
    """A loss is a setting of the model, not a weight: its buffers (the class weights of a weighted cross-entropy) move
    with the model to its device but are neither saved with it nor expected in checkpoints."""
    for module in loss.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            module.register_buffer(name, buffer, persistent=False)
    return loss
