"""Heads: modules that turn a base model's output into logits, each with a dataclass config.

Besides ``config_class`` and ``hf_equivalent_suffix``, a head whose transformers equivalent exists declares what
``archit.loading.hfmodels`` needs to go between the two (a subclass inherits these; a head declaring none is taken as
deciding nothing in transformers' config):
    - ``hf_config_fields``: head config field -> the field of transformers' config that means the same in the equivalent
      task model (``num_labels`` -> ``num_labels``, ``tie_weights`` -> ``tie_word_embeddings``): written into the config
      of an export, read from the config of a transformers task checkpoint loaded without a head config;
    - ``hf_equivalent_config``: head config values that transformers' head always has (its sequence classifiers pool the
      first token), given to a head config read from a transformers task checkpoint;
    - ``purpose``: what the head does, in words (``archit inspect`` says it of a transformers task checkpoint).
"""
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Optional, Tuple, Type

import torch
from torch import Tensor, nn
from transformers.activations import ACT2FN

from .abstracts import AllHiddenStatesAndPooling, BaseModelConfig, Head, HeadConfig
from .abstracts import Tensors as Tensors  # A published name of this module.
from .extensions import PoolingAndStridingConfig, flattenNestedBatches

__all__ = ["TokenClassificationHead", "TokenClassificationHeadConfig",
           "SequenceClassificationHead", "SequenceClassificationHeadConfig",
           "MaskedLMHead", "MaskedLMHeadConfig",
           "CausalLMHead", "CausalLMHeadConfig",
           "ExtractiveQAHead", "ExtractiveQAHeadConfig",
           "SequenceClassificationHeadForNestedBatches",
           "ExtractiveAQAHead", "ExtractiveAQAHeadConfig",
           "DependencyParsingHead", "DependencyParsingHeadConfig", "PoolingAndStridingConfig", "Biaffine", "MLP"]


@dataclass
class HeadConfigWithLabels(HeadConfig):
    num_labels: int = field(default=0, kw_only=True)  # Defaults so that tasks can fill it in.


def _require_labels(head: Type[Any], head_config: HeadConfigWithLabels) -> None:
    if head_config.num_labels <= 0:
        raise ValueError(f"{head.__name__} needs num_labels > 0 in its {type(head_config).__name__}, "
                         f"got num_labels={head_config.num_labels}.")


@dataclass
class TokenClassificationHeadConfig(HeadConfigWithLabels):
    pass


class TokenClassificationHead(Head[TokenClassificationHeadConfig]):
    """Dropout and a linear layer per token, as transformers' ``XForTokenClassification``."""
    config_class = TokenClassificationHeadConfig
    hf_equivalent_suffix = "ForTokenClassification"
    hf_config_fields = {"num_labels": "num_labels"}
    purpose = "token classification"

    def __init__(self, base_config: BaseModelConfig, head_config: TokenClassificationHeadConfig):
        super().__init__(base_config, head_config)
        self.dropout = nn.Dropout(base_config.hidden_dropout_prob)
        self.dense = nn.Linear(base_config.hidden_size, head_config.num_labels)
        self.post_init()

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor, **kwargs) -> Tensor:
        return self.dense(self.dropout(encoder_output.last_hidden_state))  # B x L x H -> B x L x C

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
    config_class = SequenceClassificationHeadConfig
    hf_config_fields = {"num_labels": "num_labels"}
    hf_equivalent_config = {"pooling": "first"}
    purpose = "sequence classification"

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
    def hfEquivalentSuffix(cls, head_config=None) -> str:
        """The task's transformers classes, ``"ForSequenceClassification"``, as the published ArchIt answers (LaMoTO
        reads it to tell a checkpoint of this task). For a given head config, whether that head computes what theirs
        does: RoBERTa's and BERT's sequence classifiers pool the first token (``hf_equivalent_config``); the
        mean-pooling head has no equivalent (``"/"``)."""
        if head_config is None or all(getattr(head_config, field, None) == value
                                      for field, value in cls.hf_equivalent_config.items()):
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
    # A head config stored without these fields (the published ArchIt's, whose head used LayerNorm(eps=1e-5) and the
    # exact GELU whatever the base model said) keeps computing that: read with these values (``dataclass_from_dict``).
    legacy_defaults: ClassVar[Dict[str, Any]] = {"layer_norm_eps": 1e-5, "hidden_act": "gelu"}


class MaskedLMHead(Head[MaskedLMHeadConfig]):
    """
    The LM head of RoBERTa and BERT: dense, activation, layer norm, and the output matrix with a bias. Epsilon and
    activation are the base model's (as in transformers' ``RobertaLMHead``/``BertLMPredictionHead``) unless the head
    config sets them.
    """
    config_class = MaskedLMHeadConfig
    hf_equivalent_suffix = "ForMaskedLM"
    hf_config_fields = {"tie_weights": "tie_word_embeddings"}
    purpose = "masked language modelling"

    def __init__(self, base_config: BaseModelConfig, head_config: MaskedLMHeadConfig):
        super().__init__(base_config, head_config)
        eps = _first_set(head_config.layer_norm_eps, base_config.layer_norm_eps, 1e-5)
        self.activation_name = _first_set(head_config.hidden_act, base_config.hidden_act, "gelu")
        # The config records what the head computes with, so that a saved checkpoint says it whatever base model
        # config reads it later (and whatever default a later archit would take).
        head_config.layer_norm_eps, head_config.hidden_act = eps, self.activation_name
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
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: MaskedLMHeadConfig):
        _require_vocabulary(cls, base_config)


@dataclass
class CausalLMHeadConfig(HeadConfig):
    tie_weights: bool = True  # Output matrix shared with the input embeddings.


class CausalLMHead(Head[CausalLMHeadConfig]):
    """The output matrix, without bias (GPT-2, Llama, ...)."""
    config_class = CausalLMHeadConfig
    hf_equivalent_suffix = "ForCausalLM"
    hf_config_fields = {"tie_weights": "tie_word_embeddings"}
    purpose = "causal language modelling"

    def __init__(self, base_config: BaseModelConfig, head_config: CausalLMHeadConfig):
        super().__init__(base_config, head_config)
        self.dense = nn.Linear(base_config.hidden_size, base_config.vocab_size, bias=False)
        self.post_init()

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor, **kwargs) -> Tensor:
        return self.dense(encoder_output.last_hidden_state)

    @classmethod
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: CausalLMHeadConfig):
        _require_vocabulary(cls, base_config)


@dataclass
class ExtractiveQAHeadConfig(HeadConfig):
    pass


class ExtractiveQAHead(Head[ExtractiveQAHeadConfig]):
    """Start and end logits per token (B x L x 2), as transformers' ``XForQuestionAnswering``."""
    config_class = ExtractiveQAHeadConfig
    hf_equivalent_suffix = "ForQuestionAnswering"
    purpose = "extractive question answering"

    def __init__(self, base_config: BaseModelConfig, head_config: ExtractiveQAHeadConfig):
        super().__init__(base_config, head_config)
        self.dense = nn.Linear(base_config.hidden_size, 2)
        self.post_init()

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor, **kwargs) -> Tensor:
        return self.dense(encoder_output.last_hidden_state)


def _require_vocabulary(head: Type[Any], base_config: BaseModelConfig) -> None:
    if base_config.vocab_size is None:
        raise ValueError(f"{head.__name__} predicts tokens of the base model's vocabulary, but this base model has "
                         f"none (vocab_size is None: it reads characters, as CANINE does).")


def _first_set(*values):
    return next(v for v in values if v is not None)


class MeanPooler:
    """Mean of the embeddings of the tokens the attention mask keeps: B x L x H -> B x H."""

    def __call__(self, embeddings: Tensor, attention_mask: Tensor) -> Tensor:
        mask = attention_mask.unsqueeze(-1).to(embeddings.dtype)
        return (embeddings * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class SequenceClassificationHeadForNestedBatches(SequenceClassificationHead):
    """``SequenceClassificationHead`` on nested batches: B x C x L x H embeddings -> B x C x num_labels logits."""
    # Never transformers' (whatever the pooling): XForMultipleChoice scores with dropout and one linear layer.
    hf_equivalent_suffix = "/"

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor, **kwargs) -> Tensor:
        batch_size, choices = encoder_output.last_hidden_state.shape[:2]
        flat_output, flat_mask = flattenNestedBatches(encoder_output, attention_mask)
        logits = super().forward(flat_output, flat_mask, **kwargs)  # B*C x num_labels
        return logits.view(batch_size, choices, -1)


@dataclass
class ExtractiveAQAHeadConfig(HeadConfig):
    ua_loss_weight: float = 1.0
    """Weight of the unanswerability loss next to the QA loss (the published config had no default)."""


class ExtractiveAQAHead(Head[ExtractiveAQAHeadConfig]):
    """
    Extractive QA with answerability: start and end logits per token (B x L x 2, as ``ExtractiveQAHead``) and
    unanswerable/answerable logits per text (B x 2, a ``SequenceClassificationHead``; class 1 is answerable).
    """
    config_class = ExtractiveAQAHeadConfig

    def __init__(self, base_config: BaseModelConfig, head_config: ExtractiveAQAHeadConfig):
        super().__init__(base_config, head_config)
        self.qa_heads = nn.Linear(base_config.hidden_size, 2)  # Start and end scorers, stored as one.
        self.ua_head = SequenceClassificationHead(base_config, SequenceClassificationHeadConfig(num_labels=2))
        self.post_init()

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor,
                **kwargs) -> Tuple[Tensor, Tensor]:
        return self.qa_heads(encoder_output.last_hidden_state), self.ua_head(encoder_output, attention_mask)

    @classmethod
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: ExtractiveAQAHeadConfig):
        if head_config.ua_loss_weight < 0:
            raise ValueError(f"ExtractiveAQAHeadConfig.ua_loss_weight must not be negative, got "
                             f"{head_config.ua_loss_weight}.")


@dataclass
class DependencyParsingHeadConfig(HeadConfigWithLabels):
    """Biaffine dependency parser (Dozat & Manning 2017, as supar's ``BiaffineDependencyModel``). ``num_labels`` is the
    number of relation labels; 0 (the default) parses unlabeled trees (arcs only, no relation scorer)."""
    extended_model_config: PoolingAndStridingConfig = field(default_factory=PoolingAndStridingConfig)
    final_hidden_size_arcs: int = 500
    final_hidden_size_relations: int = 100
    head_dropout: float = 0.33  # Dropout after each MLP of the head.
    standardisation_exponent: int = 0  # Biaffine scores are divided by final_hidden_size ** this exponent.

    def __post_init__(self):
        if isinstance(self.extended_model_config, dict):  # Read back from JSON by hand.
            self.extended_model_config = PoolingAndStridingConfig(**self.extended_model_config)


class MLP(nn.Module):
    """Linear layer, LeakyReLU(0.1) and dropout, as supar's ``MLP`` (with plain rather than shared dropout)."""

    def __init__(self, n_in: int, n_out: int, dropout: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.activation = nn.LeakyReLU(negative_slope=0.1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.activation(self.linear(x)))


class Biaffine(nn.Module):
    """
    Biaffine scorer, as supar's ``Biaffine``: ``score[b, o, i, j] = [x_i; 1] W_o [y_j; 1]^T / n_in ** scale``, where the
    ones are appended only with ``bias_x``/``bias_y``. ``weight`` is n_out x (n_in + bias_x) x (n_in + bias_y).
    Returns B x n_out x Lx x Ly.
    """

    def __init__(self, n_in: int, n_out: int = 1, scale: int = 0, bias_x: bool = True, bias_y: bool = True):
        super().__init__()
        self.n_in, self.n_out, self.scale, self.bias_x, self.bias_y = n_in, n_out, scale, bias_x, bias_y
        self.weight = nn.Parameter(torch.zeros(n_out, n_in + bias_x, n_in + bias_y))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if self.bias_x:
            x = torch.cat((x, torch.ones_like(x[..., :1])), dim=-1)
        if self.bias_y:
            y = torch.cat((y, torch.ones_like(y[..., :1])), dim=-1)
        return torch.einsum("bxi,oij,byj->boxy", x, self.weight, y) / self.n_in ** self.scale

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}, scale={self.scale}, bias_x={self.bias_x}, bias_y={self.bias_y}"


class DependencyParsingHead(Head[DependencyParsingHeadConfig]):
    """
    Biaffine dependency parsing on word embeddings (B x W x H, from ``ForTokensGroupedByWord``): MLPs for words as
    dependents and as heads, a biaffine arc scorer and, when ``num_labels`` > 0, a biaffine relation scorer. Returns
    ``(arc scores B x W x W, relation scores B x W x W x num_labels)`` indexed ``[b, dependent, head(, relation)]``;
    arc scores of heads that are padding words (``attention_mask`` B x W false) are the dtype's most negative value.
    Without relation labels the relation scores are B x W x W x 0 and the head has no relation parameters.
    Initialisation as supar: orthogonal MLP weights, zero biases and zero biaffine weights.
    """
    config_class = DependencyParsingHeadConfig

    def __init__(self, base_config: BaseModelConfig, head_config: DependencyParsingHeadConfig):
        super().__init__(base_config, head_config)
        self.dropout = nn.Dropout(base_config.hidden_dropout_prob)
        hidden, arcs, relations = (base_config.hidden_size, head_config.final_hidden_size_arcs,
                                   head_config.final_hidden_size_relations)
        self.arc_mlp_d = MLP(hidden, arcs, dropout=head_config.head_dropout)
        self.arc_mlp_h = MLP(hidden, arcs, dropout=head_config.head_dropout)
        self.arc_attn = Biaffine(arcs, scale=head_config.standardisation_exponent, bias_x=True, bias_y=False)
        self.num_labels = head_config.num_labels
        if self.num_labels > 0:
            self.rel_mlp_d = MLP(hidden, relations, dropout=head_config.head_dropout)
            self.rel_mlp_h = MLP(hidden, relations, dropout=head_config.head_dropout)
            self.rel_attn = Biaffine(relations, n_out=self.num_labels, bias_x=True, bias_y=True)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if any(p.is_meta for p in module.parameters(recurse=False)):
            return
        with torch.no_grad():
            if isinstance(module, nn.Linear):  # Every linear layer of this head is an MLP's.
                weight = torch.empty(module.weight.shape, dtype=torch.float32, device=module.weight.device)
                module.weight.copy_(nn.init.orthogonal_(weight))  # In float32: QR has no half-precision kernel.
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, Biaffine):
                module.weight.zero_()
            else:
                super()._init_weights(module)

    def forward(self, encoder_output: AllHiddenStatesAndPooling, attention_mask: Tensor,
                **kwargs) -> Tuple[Tensor, Tensor]:
        """``attention_mask``: B x W, which words are present."""
        x = self.dropout(encoder_output.last_hidden_state)  # B x W x H
        heads_present = attention_mask.to(torch.bool).unsqueeze(1)  # B x 1 x W
        arc_scores = self.arc_attn(self.arc_mlp_d(x), self.arc_mlp_h(x)).squeeze(1)  # B x W x W
        arc_scores = arc_scores.masked_fill(~heads_present, torch.finfo(arc_scores.dtype).min)
        if self.num_labels > 0:
            relation_scores = self.rel_attn(self.rel_mlp_d(x), self.rel_mlp_h(x)).permute(0, 2, 3, 1)
        else:
            relation_scores = arc_scores.new_zeros(*arc_scores.shape, 0)
        return arc_scores, relation_scores  # B x W x W, B x W x W x R

    @classmethod
    def assertConfigConstraints(cls, base_config: BaseModelConfig, head_config: DependencyParsingHeadConfig):
        if head_config.num_labels < 0:
            raise ValueError(f"DependencyParsingHeadConfig.num_labels must be 0 (unlabeled) or positive, got "
                             f"{head_config.num_labels}.")
        for name in ("final_hidden_size_arcs", "final_hidden_size_relations"):
            if getattr(head_config, name) < 1:
                raise ValueError(f"DependencyParsingHeadConfig.{name} must be positive, got "
                                 f"{getattr(head_config, name)}.")
        if not 0 <= head_config.head_dropout < 1:
            raise ValueError(f"DependencyParsingHeadConfig.head_dropout must be in [0, 1), got {head_config.head_dropout}.")
        if head_config.standardisation_exponent < 0:
            raise ValueError(f"DependencyParsingHeadConfig.standardisation_exponent must not be negative, got "
                             f"{head_config.standardisation_exponent}.")
