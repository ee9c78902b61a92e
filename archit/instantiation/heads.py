"""Heads: modules that turn a base model's output into logits, each with a dataclass config."""
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn
from transformers.activations import ACT2FN

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
    def hfEquivalentSuffix(cls, head_config=None) -> str:
        return "ForTokenClassification"

    @classmethod
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: TokenClassificationHeadConfig):
        _require_labels(cls, head_config)


SEQUENCE_POOLINGS = ("mean", "first")


@dataclass
class SequenceClassificationHeadConfig(HeadConfigWithLabels):
    pooling: str = field(default="mean", kw_only=True)
    """How the text becomes one vector: ``"mean"`` (the published head: the base model's pooler output if it has one,
    else the mean over the attention mask) or ``"first"`` (the first token's embedding, as RoBERTa's and BERT's
    sequence classifiers do; transformers' ``XForSequenceClassification`` heads of those families are imported)."""


class SequenceClassificationHead(Head[SequenceClassificationHeadConfig]):
    """Pool (see ``SequenceClassificationHeadConfig.pooling``), then dropout-dense-tanh-dropout-dense."""

    def __init__(self, base_config: BaseModelConfig, head_config: SequenceClassificationHeadConfig):
        super().__init__(base_config, head_config)
        self.dropout = nn.Dropout(base_config.hidden_dropout_prob)
        self.dense1 = nn.Linear(base_config.hidden_size, base_config.hidden_size)
        self.dense2 = nn.Linear(base_config.hidden_size, head_config.num_labels)
        self.pooler = MeanPooler()
        self._first_token = head_config.pooling == "first"
        self.post_init()

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor, **kwargs) -> Tensor:
        if self._first_token:
            x = encoder_output.last_hidden_state[:, 0]
        else:
            x = encoder_output.pooler_output
            if x is None:
                x = self.pooler(encoder_output.last_hidden_state, attention_mask)
        x = torch.tanh(self.dense1(self.dropout(x)))
        return self.dense2(self.dropout(x))

    @classmethod
    def configClass(cls):
        return SequenceClassificationHeadConfig

    @classmethod
    def hfEquivalentSuffix(cls, head_config=None) -> str:
        """RoBERTa's and BERT's sequence classifiers pool the first token; the mean-pooling head has no equivalent."""
        if head_config is not None and getattr(head_config, "pooling", "mean") == "first":
            return "ForSequenceClassification"
        return "/"

    @classmethod
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: SequenceClassificationHeadConfig):
        _require_labels(cls, head_config)
        if head_config.pooling not in SEQUENCE_POOLINGS:
            raise ValueError(f"SequenceClassificationHeadConfig.pooling must be one of {SEQUENCE_POOLINGS}, "
                             f"got {head_config.pooling!r}.")


@dataclass
class MaskedLMHeadConfig(HeadConfig):
    tie_weights: bool = True  # Output matrix shared with the input embeddings.
    layer_norm_eps: Optional[float] = None  # None: the base model's layer_norm_eps (1e-5 if it has none).
    hidden_act: Optional[str] = None  # None: the base model's hidden_act ("gelu" if it has none).


class MaskedLMHead(Head[MaskedLMHeadConfig]):
    """
    The LM head of RoBERTa and BERT: dense, activation, layer norm, and the output matrix with a bias. Epsilon and
    activation are the base model's (as in transformers' ``RobertaLMHead``/``BertLMPredictionHead``) unless the head
    config sets them.
    """

    def __init__(self, base_config: BaseModelConfig, head_config: MaskedLMHeadConfig):
        super().__init__(base_config, head_config)
        eps = _first_set(head_config.layer_norm_eps, base_config.layer_norm_eps, 1e-5)
        self.activation_name = _first_set(head_config.hidden_act, base_config.hidden_act, "gelu")
        self.dense1 = nn.Linear(base_config.hidden_size, base_config.hidden_size)
        self.activation = ACT2FN[self.activation_name]
        self.layer_norm = nn.LayerNorm(base_config.hidden_size, eps=eps)
        self.dense2 = nn.Linear(base_config.hidden_size, base_config.vocab_size, bias=True)
        self.post_init()

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor, **kwargs) -> Tensor:
        x = self.dense1(encoder_output.last_hidden_state)
        x = self.layer_norm(self.activation(x))
        return self.dense2(x)

    @classmethod
    def configClass(cls):
        return MaskedLMHeadConfig

    @classmethod
    def hfEquivalentSuffix(cls, head_config=None) -> str:
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
    def hfEquivalentSuffix(cls, head_config=None) -> str:
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
    def hfEquivalentSuffix(cls, head_config=None) -> str:
        return "ForQuestionAnswering"

    @classmethod
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: ExtractiveQAHeadConfig):
        pass


def _first_set(*values):
    return next(v for v in values if v is not None)


class MeanPooler:
    """Mean of the embeddings of the tokens the attention mask keeps: B x L x H -> B x H."""

    def __call__(self, embeddings: Tensor, attention_mask: Tensor) -> Tensor:
        mask = attention_mask.unsqueeze(-1).to(embeddings.dtype)
        return (embeddings * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
