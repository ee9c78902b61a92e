"""
Partial implementations of ``ModelWithHead`` that change how the base model is called, for any head:
    - ``ForTokensGroupedByWord``: inputs grouped by word (B x W x S), with a learnt mix over the last layers, pooling of
      each word's subwords, and striding over inputs longer than the base model's context length.
    - ``ForNestedBatches``: inputs with an extra batch dimension (B x C x L), e.g. one sequence per answer choice.
They are not ``BaseModel`` subclasses because they are oblivious to which transformers model is wrapped.
"""
import logging
from dataclasses import dataclass
from enum import Enum
from typing import Any, List, Optional, Sequence, Tuple, Type, TypeVar, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.loss import _Loss
from torch.nn.utils.rnn import pad_sequence

from .. import _compat as compat
from .abstracts import AllHiddenStatesAndPooling, BaseModel, Head, ModelWithHead, ModelWithHeadOutput
from .configs import HC, PC, CombinedConfig, HeadConfig, RecursiveSerialisable

logger = logging.getLogger(__name__)

__all__ = ["SubwordPooling", "PoolingAndStridingConfig", "BaseModelExtendedConfig", "ScalarMix",
           "ForTokensGroupedByWord", "usableContextLength", "POSITIONS_AFTER_PADDING",
           "ForNestedBatches", "flattenNestedBatches", "unflattenNestedBatches",
           # What ``from archit.instantiation.extensions import *`` also gave with the published ArchIt (no __all__):
           "AllHiddenStatesAndPooling", "BaseModel", "CombinedConfig", "Enum", "HC", "Head", "HeadConfig",
           "ModelWithHead", "PC", "RecursiveSerialisable", "Tensor", "Tuple", "TypeVar", "dataclass", "torch"]



class SubwordPooling(str, Enum):  # https://aclanthology.org/2021.eacl-main.194.pdf
    """How a word's embedding is made from the embeddings of its subwords. The values (``"1"``, ``"2"``, ``"3"``) are
    what the published ArchIt wrote into ``config.json``."""
    FIRST = 1
    LAST = 2
    MEAN = 3

    @classmethod
    def parse(cls, value: Any) -> "SubwordPooling":
        """A member from itself, its value (``"3"`` or ``3``, as read back from JSON) or its name (``"MEAN"``/``"mean"``)."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value))
        except ValueError:
            pass
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise ValueError(f"word_pooling must be one of {[m.name for m in cls]} (or their values "
                         f"{[m.value for m in cls]}), got {value!r}.")


@dataclass
class PoolingAndStridingConfig(RecursiveSerialisable):
    """How ``ForTokensGroupedByWord`` turns subword ids into word embeddings."""
    layer_pooling: int = 1
    """Mix of the last N hidden states (learnt softmax weights and scale, see ``ScalarMix``); 1 is the last layer."""
    word_pooling: SubwordPooling = SubwordPooling.MEAN
    """Pooling of a word's subword embeddings into one embedding."""
    stride: int = 256
    """Tokens the context window shifts by when the input is longer than the base model's context length."""

    def __post_init__(self):
        self.word_pooling = SubwordPooling.parse(self.word_pooling)
        if self.layer_pooling < 1:
            raise ValueError(f"PoolingAndStridingConfig.layer_pooling must be at least 1, got {self.layer_pooling}.")
        if self.stride < 1:
            raise ValueError(f"PoolingAndStridingConfig.stride must be at least 1, got {self.stride}.")


BaseModelExtendedConfig = PoolingAndStridingConfig  # Backward compatibility.


class ScalarMix(nn.Module):
    """
    ``gamma * sum_i softmax(weights)_i * tensors[i]``: a learnt weighted sum of N same-shaped tensors (the last N
    hidden states), as supar's and AllenNLP's ``ScalarMix`` (without their dropout on the weights). Parameter names
    (``weights``, ``gamma``) and shapes (N and 1) are supar's, so checkpoints of the published ArchIt load.
    """

    def __init__(self, n_layers: int):
        super().__init__()
        self.n_layers = n_layers
        self.weights = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(1))

    def reset_parameters(self) -> None:
        """Equal weights and unit scale: the mean of the tensors. The loader calls this for a checkpoint without them."""
        with torch.no_grad():
            self.weights.zero_()
            self.gamma.fill_(1.0)

    def forward(self, tensors: Sequence[Tensor]) -> Tensor:
        if len(tensors) != self.n_layers:
            raise ValueError(f"ScalarMix over {self.n_layers} layers got {len(tensors)} tensors.")
        weights = self.weights.softmax(-1)
        return self.gamma * sum(w * t for w, t in zip(weights, tensors))

    def extra_repr(self) -> str:
        return f"n_layers={self.n_layers}"


POSITIONS_AFTER_PADDING = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "roberta-prelayernorm", "xmod", "ibert",
    "longformer", "mpnet", "luke", "lilt", "layoutlmv3", "markuplm", "esm",
})
"""``model_type`` of the families whose transformers embeddings number positions from ``pad_token_id + 1`` (fairseq's
``make_positions``; transformers' ``create_position_ids_from_input_ids``), so that ``pad_token_id + 1`` of their
``max_position_embeddings`` can never be used."""


def usableContextLength(base_model_class: Type[Any], raw_config: Any) -> Optional[int]:
    """
    The longest token sequence the base model can embed (``None``: no limit). ``standardiseConfig(...).context_length``
    is the number of position embeddings; RoBERTa and its kin (``POSITIONS_AFTER_PADDING``) give the first token
    position ``pad_token_id + 1``, so with RoBERTa's 514 position embeddings and ``pad_token_id=1`` only 512 tokens fit:
    a window of 514 tokens would index position 515 and fail. For those families this is
    ``context_length - pad_token_id - 1``.
    """
    length = base_model_class.standardiseConfig(raw_config).context_length
    if length is None:
        return None
    if getattr(raw_config, "model_type", None) in POSITIONS_AFTER_PADDING and raw_config.pad_token_id is not None:
        length -= raw_config.pad_token_id + 1
    if length < 1:
        raise ValueError(f"{base_model_class.__name__}'s config leaves no usable context (context length {length}).")
    return length


class ForTokensGroupedByWord(ModelWithHead[PC, HC]):
    """
    A model-with-head whose inputs are grouped by word: ``input_ids`` is B x W x S (sentences x words x subwords, both
    padded with the base model's ``pad_token_id``), and the head receives one embedding per word (B x W x H) and the
    word-level mask (B x W; a word is present when its first subword is not padding). Three features:
        - layer pooling: the token embeddings are a learnt mix (``ScalarMix``, ``self.scalar_mix``) of the last
          ``layer_pooling`` hidden states, or the last hidden state when ``layer_pooling`` is 1;
        - word pooling: each word's subword embeddings are pooled (first, last or mean, ``SubwordPooling``);
        - striding: each sentence's subwords are concatenated into one token sequence; when that is longer than the base
          model's usable context length (``usableContextLength``), the model is run on windows of that length shifted
          by ``stride`` tokens, and every window after the first contributes the embeddings of the tokens no earlier
          window embedded (its last ``stride`` tokens). A stride longer than the context length is cut to it; a base
          model without a context limit gets the whole sequence at once.
    The ``attention_mask`` given to ``forward`` is not used (the masks are computed from the ids), nor are other
    keyword arguments passed to the base model. Special tokens (``<s>``, ``</s>``) are whatever the ids contain: put them
    in words of their own if the base model expects them.
    """

    def __init__(self, combined_config: CombinedConfig, extended_config: PoolingAndStridingConfig, model: BaseModel,
                 head: Head, loss: _Loss):
        super().__init__(combined_config=combined_config, model=model, head=head, loss=loss)
        pad_index = model.config.pad_token_id
        if pad_index is None:
            raise ValueError(f"{type(self).__name__} needs the base model's config ({type(model.config).__name__}) to "
                             f"have a pad_token_id: it pads words and subwords with it. Set pad_token_id in the config.")
        base_config = model.__class__.standardiseConfig(model.config)
        self._layer_pooling = extended_config.layer_pooling
        self._pooling_method = SubwordPooling.parse(extended_config.word_pooling)
        self._context_length = usableContextLength(model.__class__, model.config)
        self._stride = extended_config.stride
        self._hidden_size = base_config.hidden_size
        self._pad_index = pad_index
        if self._layer_pooling > base_config.num_hidden_layers + 1:
            raise ValueError(f"layer_pooling={self._layer_pooling} mixes more hidden states than the base model has "
                             f"({base_config.num_hidden_layers} layers plus the embeddings).")
        if self._context_length is not None and self._stride > self._context_length:
            logger.warning("stride=%d is longer than the context length of %s (%d tokens); striding by %d instead.",
                           self._stride, type(model).__name__, self._context_length, self._context_length)
            self._stride = self._context_length
        self.scalar_mix: Optional[ScalarMix] = ScalarMix(self._layer_pooling) if self._layer_pooling > 1 else None

    @compat.hide_kwargs_from_signature  # As ModelWithHead.forward: no **kwargs for the Trainer to see.
    def forward(self, input_ids: Tensor, attention_mask: Optional[Tensor] = None,  # type: ignore[override]
                labels: Optional[Any] = None, output_hidden_states: Optional[bool] = None,
                **kwargs) -> Union[ModelWithHeadOutput, Tuple[Any, ...]]:
        """``input_ids`` B x W x S; ``attention_mask`` is ignored (see the class docstring). Other keyword arguments as in
        ``ModelWithHead.forward``."""
        return super().forward(input_ids, self.wordMask(input_ids), labels=labels,
                               output_hidden_states=output_hidden_states, **kwargs)

    def wordMask(self, input_ids: Tensor) -> Tensor:
        """B x W booleans: which words are present (their first subword is not padding)."""
        self._check_input_ids(input_ids)
        return input_ids[:, :, 0].ne(self._pad_index)

    def callBaseModel(self, input_ids: Tensor, attention_mask: Optional[Tensor], do_drop_intermediates: bool,
                      **kwargs) -> AllHiddenStatesAndPooling:
        """Word embeddings B x W x H (zero for padding words). ``attention_mask`` and ``kwargs`` are not used."""
        self._check_input_ids(input_ids)
        subword_mask = input_ids.ne(self._pad_index)  # B x W x S
        tokens_per_sentence = subword_mask.sum((1, 2)).tolist()

        # Each sentence's subwords in one sequence, right-padded: B x T.
        tokens = pad_sequence(list(input_ids[subword_mask].split(tokens_per_sentence)), batch_first=True,
                              padding_value=self._pad_index)
        token_mask = pad_sequence([torch.ones(n, dtype=torch.bool, device=input_ids.device)
                                   for n in tokens_per_sentence], batch_first=True, padding_value=False)
        batch_size, words, subwords = input_ids.shape
        if tokens.size(1) == 0:  # Nothing but padding.
            dtype = self.model.get_input_embeddings().weight.dtype
            return AllHiddenStatesAndPooling(last_hidden_state=torch.zeros(batch_size, words, self._hidden_size,
                                                                           dtype=dtype, device=input_ids.device))
        x = self._embed_tokens(tokens, token_mask)  # B x T x H

        # Back into words: B x W x S x H, zero at padding subwords and padding words.
        grouped = x.new_zeros(batch_size, words, subwords, x.size(-1))
        grouped[subword_mask] = x[token_mask]

        subwords_per_word = subword_mask.sum(-1)  # B x W
        if self._pooling_method == SubwordPooling.FIRST:
            pooled = grouped[:, :, 0]
        elif self._pooling_method == SubwordPooling.LAST:
            last = (subwords_per_word - 1).clamp(min=0)
            pooled = grouped.gather(2, last[:, :, None, None].expand(-1, -1, 1, grouped.size(-1))).squeeze(2)
        elif self._pooling_method == SubwordPooling.MEAN:
            pooled = grouped.sum(2) / subwords_per_word.clamp(min=1).unsqueeze(-1).to(grouped.dtype)
        else:
            raise RuntimeError(f"Unsupported word pooling {self._pooling_method!r}.")
        return AllHiddenStatesAndPooling(last_hidden_state=pooled)  # B x W x H

    def _embed_tokens(self, tokens: Tensor, token_mask: Tensor) -> Tensor:
        """Embeddings B x T x H of right-padded token sequences of any length, striding over windows."""
        length, window, stride = tokens.size(1), self._context_length, self._stride
        if window is None:  # No limit.
            return self._embed_window(tokens, token_mask, 0, 0)
        pieces: List[Tensor] = [self._embed_window(tokens, token_mask, 0, 0)]
        start = 0
        while start + window < length:
            start += stride
            pieces.append(self._embed_window(tokens, token_mask, start, window - stride))
        return torch.cat(pieces, dim=1)

    def _embed_window(self, tokens: Tensor, token_mask: Tensor, start: int, keep_from: int) -> Tensor:
        """The embeddings of window ``tokens[:, start:start+context]`` from its position ``keep_from`` on. Sentences
        without tokens there are not run (a fully masked sequence can give NaN); their rows are zero."""
        end = None if self._context_length is None else start + self._context_length
        window_tokens, window_mask = tokens[:, start:end], token_mask[:, start:end]
        rows = window_mask[:, keep_from:].any(dim=1)
        output = self.model(window_tokens[rows], attention_mask=window_mask[rows].long(),
                            do_drop_intermediates=self.scalar_mix is None)
        if self.scalar_mix is None:
            embeddings = output.last_hidden_state
        else:
            embeddings = self.scalar_mix(output.hidden_states[-self._layer_pooling:])
        embeddings = embeddings[:, keep_from:]
        if bool(rows.all()):
            return embeddings
        piece = embeddings.new_zeros(tokens.size(0), embeddings.size(1), embeddings.size(2))
        piece[rows] = embeddings
        return piece

    @staticmethod
    def _check_input_ids(input_ids: Tensor) -> None:
        if input_ids.dim() != 3:
            raise ValueError(f"input_ids must be 3-dimensional (batch x words x subwords), got shape "
                             f"{tuple(input_ids.shape)}.")


class ForNestedBatches(ModelWithHead[PC, HC]):
    """
    A model-with-head for nested batches: ``input_ids`` and ``attention_mask`` are B x C x L rather than B x L, e.g. one
    sequence per answer choice in multiple choice, so that the C sequences of one example are never split across
    batches. The base model runs on the B*C flattened sequences (tensor keyword arguments shaped B x C x ..., such as
    ``token_type_ids``, are flattened too); its output is unflattened to B x C x L x H for the head. C may differ from
    batch to batch.
    """

    def callBaseModel(self, input_ids: Tensor, attention_mask: Tensor, do_drop_intermediates: bool,
                      **kwargs) -> AllHiddenStatesAndPooling:
        if input_ids.dim() != 3:
            raise ValueError(f"input_ids must be 3-dimensional (batch x choices x tokens), got shape "
                             f"{tuple(input_ids.shape)}.")
        if attention_mask is None or tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, got "
                             f"{None if attention_mask is None else tuple(attention_mask.shape)}.")
        batch_size, choices, length = input_ids.shape
        flat_kwargs = {k: v.reshape(batch_size * choices, *v.shape[2:])
                       if isinstance(v, Tensor) and v.dim() >= 2 and tuple(v.shape[:2]) == (batch_size, choices) else v
                       for k, v in kwargs.items()}
        flat_output = self.model(input_ids.reshape(-1, length), attention_mask.reshape(-1, length),
                                 do_drop_intermediates=do_drop_intermediates, **flat_kwargs)
        return unflattenNestedBatches(flat_output, batch_size, choices)


def flattenNestedBatches(embeddings: AllHiddenStatesAndPooling,
                         attention_mask: Tensor) -> Tuple[AllHiddenStatesAndPooling, Tensor]:
    """B1 x B2 x L x H embeddings and a B1 x B2 x L mask -> B1*B2 x L x H embeddings and a B1*B2 x L mask."""
    _, _, length, hidden = embeddings.last_hidden_state.shape
    return AllHiddenStatesAndPooling(
        last_hidden_state=embeddings.last_hidden_state.reshape(-1, length, hidden),
        hidden_states=None if embeddings.hidden_states is None else
        tuple(t.reshape(-1, length, t.size(-1)) for t in embeddings.hidden_states),
        pooler_output=None if embeddings.pooler_output is None else
        embeddings.pooler_output.reshape(-1, embeddings.pooler_output.size(-1)),
    ), attention_mask.reshape(-1, length)


def unflattenNestedBatches(flat_embeddings: AllHiddenStatesAndPooling, B1: int, B2: int) -> AllHiddenStatesAndPooling:
    """Inverse of ``flattenNestedBatches`` (for the embeddings): B1*B2 x L x H -> B1 x B2 x L x H."""
    _, length, hidden = flat_embeddings.last_hidden_state.shape
    return AllHiddenStatesAndPooling(
        last_hidden_state=flat_embeddings.last_hidden_state.reshape(B1, B2, length, hidden),
        hidden_states=None if flat_embeddings.hidden_states is None else
        tuple(t.reshape(B1, B2, length, t.size(-1)) for t in flat_embeddings.hidden_states),
        pooler_output=None if flat_embeddings.pooler_output is None else
        flat_embeddings.pooler_output.reshape(B1, B2, flat_embeddings.pooler_output.size(-1)),
    )
