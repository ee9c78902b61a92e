"""Tasks: which head a task uses and how its loss is computed from logits and labels."""
from typing import Optional

from torch import FloatTensor, Tensor, nn
from torch.nn.modules.loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, _Loss

from .abstracts import ModelWithHead
from .configs import PC
from .heads import (
    CausalLMHead,
    CausalLMHeadConfig,
    ExtractiveQAHead,
    ExtractiveQAHeadConfig,
    MaskedLMHead,
    MaskedLMHeadConfig,
    SequenceClassificationHead,
    SequenceClassificationHeadConfig,
    TokenClassificationHead,
    TokenClassificationHeadConfig,
)

__all__ = ["ForSingleLabelTokenClassification", "ForSingleLabelSequenceClassification",
           "ForMultiLabelSequenceClassification", "ForSequenceRegression", "ForExtractiveQA", "ForCausalLM",
           "ForMaskedLM"]


class ForSingleLabelTokenClassification(ModelWithHead[PC, TokenClassificationHeadConfig]):
    """One class per token; labels B x L with -100 for tokens without a label."""

    @classmethod
    def headClass(cls):
        return TokenClassificationHead

    @classmethod
    def buildLoss(cls) -> _Loss:
        return CrossEntropyLoss()

    def computeLoss(self, logits: Tensor, labels: Tensor) -> FloatTensor:
        return self.loss_function(logits.view(-1, logits.size(-1)), labels.to(logits.device).view(-1))


class ForSingleLabelSequenceClassification(ModelWithHead[PC, SequenceClassificationHeadConfig]):
    """One class per text; labels B, integers in [0, num_labels)."""

    @classmethod
    def headClass(cls):
        return SequenceClassificationHead

    @classmethod
    def buildLoss(cls) -> _Loss:
        return CrossEntropyLoss()

    def computeLoss(self, logits: Tensor, labels: Tensor) -> FloatTensor:
        return self.loss_function(logits.view(-1, logits.size(-1)), labels.to(logits.device).view(-1))


class ForMultiLabelSequenceClassification(ModelWithHead[PC, SequenceClassificationHeadConfig]):
    """Any number of classes per text; labels B x num_labels of 0/1."""

    @classmethod
    def headClass(cls):
        return SequenceClassificationHead

    @classmethod
    def buildLoss(cls) -> _Loss:
        return BCEWithLogitsLoss()

    def computeLoss(self, logits: Tensor, labels: Tensor) -> FloatTensor:
        return self.loss_function(logits, labels.to(logits.device, logits.dtype))


class ForSequenceRegression(ModelWithHead[PC, SequenceClassificationHeadConfig]):
    """num_labels real numbers per text; labels B (num_labels 1) or B x num_labels."""

    @classmethod
    def headClass(cls):
        return SequenceClassificationHead

    @classmethod
    def buildLoss(cls) -> _Loss:
        return MSELoss()

    def computeLoss(self, logits: Tensor, labels: Tensor) -> FloatTensor:
        labels = labels.to(logits.device, logits.dtype)
        if self.config.head_config.num_labels == 1:
            return self.loss_function(logits.squeeze(), labels.squeeze())
        return self.loss_function(logits, labels)


class ForExtractiveQA(ModelWithHead[PC, ExtractiveQAHeadConfig]):
    """Answer span in the context; labels B x 2 (start, end). Positions past the input are ignored."""

    @classmethod
    def headClass(cls):
        return ExtractiveQAHead

    @classmethod
    def buildLoss(cls) -> _Loss:
        return CrossEntropyLoss()

    def computeLoss(self, logits: Tensor, labels: Tensor) -> FloatTensor:
        return extractiveQALoss(self.loss_function, logits, labels.to(logits.device))


def extractiveQALoss(loss_function: _Loss, logits: Tensor, labels: Tensor) -> FloatTensor:
    """Mean of the start and end cross-entropies, as transformers' QA models compute it."""
    start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
    start_positions, end_positions = (t.reshape(-1) for t in labels.split(1, dim=-1))
    length = start_logits.size(1)
    start_positions, end_positions = start_positions.clamp(0, length), end_positions.clamp(0, length)
    ignore_index = getattr(loss_function, "ignore_index", None)
    try:
        loss_function.ignore_index = length
        return (loss_function(start_logits, start_positions) + loss_function(end_logits, end_positions)) / 2
    finally:
        if ignore_index is not None:
            loss_function.ignore_index = ignore_index


class ForCausalLM(ModelWithHead[PC, CausalLMHeadConfig]):
    """Next-token prediction; labels B x L (usually the input ids), shifted inside."""

    @classmethod
    def headClass(cls):
        return CausalLMHead

    @classmethod
    def buildLoss(cls) -> _Loss:
        return CrossEntropyLoss()

    def computeLoss(self, logits: Tensor, labels: Tensor) -> FloatTensor:
        labels = labels.to(logits.device)
        shifted_logits = logits[:, :-1, :].contiguous()
        shifted_labels = labels[:, 1:].contiguous()
        return self.loss_function(shifted_logits.view(-1, shifted_logits.size(-1)), shifted_labels.view(-1))

    def get_output_embeddings(self) -> Optional[nn.Linear]:
        return self.head.dense

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.head.dense = new_embeddings


class ForMaskedLM(ModelWithHead[PC, MaskedLMHeadConfig]):
    """Masked-token prediction; labels B x L with -100 for tokens that were not masked."""

    @classmethod
    def headClass(cls):
        return MaskedLMHead

    @classmethod
    def buildLoss(cls) -> _Loss:
        return CrossEntropyLoss()

    def computeLoss(self, logits: Tensor, labels: Tensor) -> FloatTensor:
        return self.loss_function(logits.view(-1, logits.size(-1)), labels.to(logits.device).view(-1))

    def get_output_embeddings(self) -> Optional[nn.Linear]:
        return self.head.dense2

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.head.dense2 = new_embeddings
