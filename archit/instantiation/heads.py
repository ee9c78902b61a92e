"""Heads: modules that turn a base model's output into logits, each with a dataclass config."""
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .abstracts import AllHiddenStatesAndPooling, BaseModelConfig, Head, HeadConfig

__all__ = ["TokenClassificationHead", "TokenClassificationHeadConfig",
           "SequenceClassificationHead", "SequenceClassificationHeadConfig",
           "MaskedLMHead", "MaskedLMHeadConfig",
           "CausalLMHead", "CausalLMHeadConfig",
           "ExtractiveQAHead", "ExtractiveQAHeadConfig"]


@dataclass
class HeadConfigWithLabels(HeadConfig):
    num_labels: int = field(default=0, kw_only=True)  # Defaults so that tasks can fill it in.


def _require_labels(head: type, head_config: HeadConfigWithLabels) -> None:
    if head_config.num_labels <= 0:
        raise ValueError(f"{head.__name__} needs num_labels > 0 in its {type(head_config).__name__}, "
                         f"got num_labels={head_config.num_labels}.")


@dataclass
class TokenClassificationHeadConfig(HeadConfigWithLabels):
    pass


class TokenClassificationHead(Head[TokenClassificationHeadConfig]):
    """Dropout and a linear layer per token, as transformers' ``XForTokenClassification``."""

    def __init__(self, base_config: BaseModelConfig, head_config: TokenClassificationHeadConfig):
        super().__init__(base_config, head_config)
        self.dropout = nn.Dropout(base_config.hidden_dropout_prob)
        self.dense = nn.Linear(base_config.hidden_size, head_config.num_labels)
        self.post_init()

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor, **kwargs) -> Tensor:
        return self.dense(self.dropout(encoder_output.last_hidden_state))  # B x L x H -> B x L x C

    @classmethod
    def configClass(cls):
        return TokenClassificationHeadConfig

    @classmethod
    def hfEquivalentSuffix(cls) -> str:
        return "ForTokenClassification"

    @classmethod
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: TokenClassificationHeadConfig):
        _require_labels(cls, head_config)


@dataclass
class SequenceClassificationHeadConfig(HeadConfigWithLabels):
    pass


class SequenceClassificationHead(Head[SequenceClassificationHeadConfig]):
    """Pooler output if the base model has one, else the mean over the attention mask; then dense-tanh-dense."""

    def __init__(self, base_config: BaseModelConfig, head_config: SequenceClassificationHeadConfig):
        super().__init__(base_config, head_config)
        self.dropout = nn.Dropout(base_config.hidden_dropout_prob)
        self.dense1 = nn.Linear(base_config.hidden_size, base_config.hidden_size)
        self.dense2 = nn.Linear(base_config.hidden_size, head_config.num_labels)
        self.pooler = MeanPooler()
        self.post_init()

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor, **kwargs) -> Tensor:
        x = encoder_output.pooler_output
        if x is None:
            x = self.pooler(encoder_output.last_hidden_state, attention_mask)
        x = torch.tanh(self.dense1(self.dropout(x)))
        return self.dense2(self.dropout(x))

    @classmethod
    def configClass(cls):
        return SequenceClassificationHeadConfig

    @classmethod
    def hfEquivalentSuffix(cls) -> str:
        return "ForSequenceClassification"

    @classmethod
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: SequenceClassificationHeadConfig):
        _require_labels(cls, head_config)


@dataclass
class MaskedLMHeadConfig(HeadConfig):
    tie_weights: bool = True  # Output matrix shared with the input embeddings.


class MaskedLMHead(Head[MaskedLMHeadConfig]):
    """RoBERTa's LM head: dense, GELU, layer norm, and the output matrix with a bias."""

    def __init__(self, base_config: BaseModelConfig, head_config: MaskedLMHeadConfig):
        super().__init__(base_config, head_config)
        self.dense1 = nn.Linear(base_config.hidden_size, base_config.hidden_size)
        self.layer_norm = nn.LayerNorm(base_config.hidden_size, eps=1e-5)
        self.dense2 = nn.Linear(base_config.hidden_size, base_config.vocab_size, bias=True)
        self.post_init()

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor, **kwargs) -> Tensor:
        x = self.dense1(encoder_output.last_hidden_state)
        x = self.layer_norm(nn.functional.gelu(x))
        return self.dense2(x)

    @classmethod
    def configClass(cls):
        return MaskedLMHeadConfig

    @classmethod
    def hfEquivalentSuffix(cls) -> str:
        return "ForMaskedLM"

    @classmethod
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: MaskedLMHeadConfig):
        pass


@dataclass
class CausalLMHeadConfig(HeadConfig):
    tie_weights: bool = True  # Output matrix shared with the input embeddings.


class CausalLMHead(Head[CausalLMHeadConfig]):
    """The output matrix, without bias (GPT-2, Llama, ...)."""

    def __init__(self, base_config: BaseModelConfig, head_config: CausalLMHeadConfig):
        super().__init__(base_config, head_config)
        self.dense = nn.Linear(base_config.hidden_size, base_config.vocab_size, bias=False)
        self.post_init()

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor, **kwargs) -> Tensor:
        return self.dense(encoder_output.last_hidden_state)

    @classmethod
    def configClass(cls):
        return CausalLMHeadConfig

    @classmethod
    def hfEquivalentSuffix(cls) -> str:
        return "ForCausalLM"

    @classmethod
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: CausalLMHeadConfig):
        pass


@dataclass
class ExtractiveQAHeadConfig(HeadConfig):
    pass


class ExtractiveQAHead(Head[ExtractiveQAHeadConfig]):
    """Start and end logits per token (B x L x 2), as transformers' ``XForQuestionAnswering``."""

    def __init__(self, base_config: BaseModelConfig, head_config: ExtractiveQAHeadConfig):
        super().__init__(base_config, head_config)
        self.dense = nn.Linear(base_config.hidden_size, 2)
        self.post_init()

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor, **kwargs) -> Tensor:
        return self.dense(encoder_output.last_hidden_state)

    @classmethod
    def configClass(cls):
        return ExtractiveQAHeadConfig

    @classmethod
    def hfEquivalentSuffix(cls) -> str:
        return "ForQuestionAnswering"

    @classmethod
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: ExtractiveQAHeadConfig):
        pass


class MeanPooler:
    """Mean of the embeddings of the tokens the attention mask keeps: B x L x H -> B x H."""

    def __call__(self, embeddings: Tensor, attention_mask: Tensor) -> Tensor:
        mask = attention_mask.unsqueeze(-1).to(embeddings.dtype)
        return (embeddings * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
