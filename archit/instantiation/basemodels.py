"""Base models: one small class per transformers family, naming its config and core classes and reading its config."""
from transformers import PreTrainedModel
from transformers.models.bert import BertConfig, BertModel
from transformers.models.gpt2 import GPT2Config, GPT2Model
from transformers.models.roberta import RobertaConfig, RobertaModel

from .abstracts import AllHiddenStatesAndPooling, BaseModel, BaseModelConfig

__all__ = ["RobertaBaseModel", "BertBaseModel", "GPT2BaseModel", "AllHiddenStatesAndPooling"]


class RobertaBaseModel(BaseModel[RobertaConfig]):
    """RoBERTa without its pooler (heads pool for themselves)."""

    @classmethod
    def configClass(cls):
        return RobertaConfig

    @classmethod
    def coreClass(cls):
        return RobertaModel

    @classmethod
    def buildCore(cls, raw_config: RobertaConfig) -> PreTrainedModel:
        return RobertaModel(raw_config, add_pooling_layer=False)


class BertBaseModel(BaseModel[BertConfig]):
    """BERT without its pooler (heads pool for themselves)."""

    @classmethod
    def configClass(cls):
        return BertConfig

    @classmethod
    def coreClass(cls):
        return BertModel

    @classmethod
    def buildCore(cls, raw_config: BertConfig) -> PreTrainedModel:
        return BertModel(raw_config, add_pooling_layer=False)


class GPT2BaseModel(BaseModel[GPT2Config]):
    """GPT-2. Its dropout after each block is ``resid_pdrop``."""

    @classmethod
    def configClass(cls):
        return GPT2Config

    @classmethod
    def coreClass(cls):
        return GPT2Model

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

    @classmethod
    def hfArchitectureSuffixes(cls) -> dict:
        return {"LMHeadModel": "ForCausalLM"}
