"""Base models: one small class per transformers family, naming its config and core classes and reading its config,
and ``AutoBaseModel`` for any family that transformers' ``AutoModel`` can build."""
from typing import Type

import transformers
from transformers import MODEL_MAPPING, PretrainedConfig, PreTrainedModel
from transformers.models.bert import BertConfig, BertModel
from transformers.models.canine import CanineConfig, CanineModel
from transformers.models.deberta import DebertaConfig, DebertaModel
from transformers.models.gpt2 import GPT2Config, GPT2Model
from transformers.models.roberta import RobertaConfig, RobertaModel

from .. import _compat as compat
from ..loading.checkpointcode import core_class_of_code, missing_code_hint
from .abstracts import AllHiddenStatesAndPooling, BaseModel, BaseModelConfig, build_without_pooler
from .standardisation import read_standard_fields

# The configuration only, or None before 4.48: ModernBERT's modeling module compiles on import, so its model class is
# looked up when first used (coreClass()).
ModernBertConfig = compat.modernbert_config_class()

__all__ = ["RobertaBaseModel", "BertBaseModel", "GPT2BaseModel", "DebertaBaseModel", "ModernBertBaseModel",
           "CanineBaseModel", "AutoBaseModel", "AllHiddenStatesAndPooling"]

# Names the published ArchIt's basemodels module had by importing them.
from torch import Tensor as Tensor  # noqa: E402
from transformers.modeling_outputs import BaseModelOutput as BaseModelOutput  # noqa: E402


def __getattr__(name: str):
    """``ModernBertModel``, a published name of this module, imported when asked for (see ``ModernBertConfig`` above)."""
    if name == "ModernBertModel" and ModernBertConfig is not None:
        return transformers.ModernBertModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RobertaBaseModel(BaseModel[RobertaConfig]):
    """RoBERTa without its pooler (heads pool for themselves)."""
    config_class = RobertaConfig
    core_class = RobertaModel


class BertBaseModel(BaseModel[BertConfig]):
    """BERT without its pooler (heads pool for themselves)."""
    config_class = BertConfig
    core_class = BertModel


class GPT2BaseModel(BaseModel[GPT2Config]):
    """GPT-2. Its dropout after each block is ``resid_pdrop``."""
    config_class = GPT2Config
    core_class = GPT2Model

    @classmethod
    def standardiseConfig(cls, raw_config: GPT2Config) -> BaseModelConfig:
        return BaseModelConfig(
            hidden_size=raw_config.n_embd,
            hidden_dropout_prob=raw_config.resid_pdrop,
            vocab_size=raw_config.vocab_size,
            num_hidden_layers=raw_config.n_layer,
            num_attention_heads=raw_config.n_head,
            context_length=raw_config.n_positions,
        )


class DebertaBaseModel(BaseModel[DebertaConfig]):
    """DeBERTa (v1; DeBERTa-v2/v3 through ``AutoBaseModel``). It has no pooler."""
    config_class = DebertaConfig
    core_class = DebertaModel

    @classmethod
    def standardiseConfig(cls, raw_config: DebertaConfig) -> BaseModelConfig:
        """The context length is ``max_position_embeddings`` when the model adds absolute positions. With relative
        attention alone, each layer sees ``max_relative_positions`` tokens to each side, so the receptive field of the
        stack is ``(2*max_relative_positions - 1) * num_hidden_layers`` (the published ArchIt's formula); a
        ``max_relative_positions`` below 1 means ``max_position_embeddings``, as in ``DebertaModel``."""
        context_length = raw_config.max_position_embeddings
        if not raw_config.position_biased_input and raw_config.relative_attention:
            span = raw_config.max_relative_positions
            if span is None or span < 1:
                span = raw_config.max_position_embeddings
            context_length = (2 * span - 1) * raw_config.num_hidden_layers
        return read_standard_fields(raw_config, context_length=context_length)


def _modernbert_config() -> type:
    if ModernBertConfig is None:
        raise ImportError(f"ModernBertBaseModel needs transformers >= 4.48, the first release with ModernBERT; this is "
                          f"transformers {compat.TRANSFORMERS_VERSION}. Upgrade it: pip install 'transformers>=4.48'.")
    return ModernBertConfig


class ModernBertBaseModel(BaseModel["ModernBertConfig"]):  # type: ignore[valid-type]  # None before 4.48
    """
    ModernBERT (transformers >= 4.48; on older releases every use of this class raises ``ImportError``). It has no
    pooler and no overall dropout: heads use its ``classifier_dropout``, as its own task models and the published
    ArchIt do. Without a requested attention implementation, transformers picks SDPA on CPU (flash attention only
    where it is installed and the model is on a GPU).
    """

    @classmethod
    def configClass(cls):
        return _modernbert_config()

    @classmethod
    def coreClass(cls):
        _modernbert_config()
        return transformers.ModernBertModel  # transformers' lazy module imports the modeling file now.


class CanineBaseModel(BaseModel[CanineConfig]):
    """CANINE without its pooler (heads pool for themselves). It reads Unicode characters, so it has no vocabulary:
    ``vocab_size`` is ``None`` and heads that predict tokens (masked or causal LM) cannot be put on it."""
    config_class = CanineConfig
    core_class = CanineModel


class AutoBaseModel(BaseModel[PretrainedConfig]):
    """
    Any base model transformers' ``AutoModel`` can build from a config (BERT-likes, DistilBERT, ELECTRA, XLM-R,
    DeBERTa-v2, GPT-2, Llama, Mistral, Qwen2, ...); the family is the config's, and on loading the checkpoint's
    ``model_type``. Like the family classes, it leaves out the core's pooler where the core can do without one, so
    that its checkpoints and the family classes' (``RobertaBaseModel``, ...) are interchangeable. Encoder-decoder
    families (T5, BART) need decoder inputs and are not supported.

    Its config class is the generic ``PretrainedConfig``: a config dictionary is read as the class its ``model_type``
    names (``archit.instantiation.configs.base_config_from_dict``), when loading and in ``CombinedConfig``. Its core
    class depends on the config (``coreClassFor``).

    A checkpoint that ships its own code (an ``auto_map`` in its ``config.json``, ``configuration_x.py`` and
    ``modeling_x.py``, for a model transformers does not have) is built from that code when, and only when,
    ``from_pretrained`` gets ``trust_remote_code=True``; otherwise it is refused without importing any of it.
    """
    config_class = PretrainedConfig

    @classmethod
    def coreClass(cls):
        raise TypeError("AutoBaseModel's core class depends on the config: use AutoBaseModel.coreClassFor(config).")

    @classmethod
    def coreClassFor(cls, raw_config: PretrainedConfig) -> Type[PreTrainedModel]:
        """The transformers base model class ``AutoModel`` builds for ``raw_config``. Where a family has several
        (Funnel), the one the config's ``architectures`` names, else the first, as ``AutoModel`` chooses. For a config
        of code that shipped with a checkpoint and was loaded with ``trust_remote_code=True``, the class that code's
        ``auto_map`` names for ``AutoModel`` (or one registered with transformers' ``AutoModel.register``)."""
        core_class = core_class_of_code(raw_config)
        if core_class is not None:
            return core_class
        try:
            core_class = MODEL_MAPPING[type(raw_config)]
        except KeyError:
            raise ValueError(f"AutoBaseModel cannot wrap {type(raw_config).__name__} (model_type "
                             f"'{raw_config.model_type}'): transformers' AutoModel has no base model for it."
                             + missing_code_hint(raw_config, "AutoModel")) from None
        if isinstance(core_class, (tuple, list)):
            named = set(getattr(raw_config, "architectures", None) or [])
            core_class = next((c for c in core_class if c.__name__ in named), core_class[0])
        return core_class

    @classmethod
    def buildCore(cls, raw_config: PretrainedConfig) -> PreTrainedModel:
        """The core class's constructor rather than ``AutoModel.from_config``, which on some releases replaces the
        attention implementation the config asks for (4.36) or builds in the dtype the config records (later ones)."""
        if getattr(raw_config, "is_encoder_decoder", False):
            raise ValueError(f"AutoBaseModel wraps encoder-only and decoder-only models; '{raw_config.model_type}' is "
                             f"an encoder-decoder, whose base model needs decoder inputs.")
        return build_without_pooler(cls.coreClassFor(raw_config), raw_config)
