"""Tasks: which head a task uses (``head_class``), its loss (``loss_class``, a cross-entropy unless said otherwise) and how
the loss is computed from logits and labels (``computeLoss``, unless the default ``flatLoss`` fits).

A task also declares, and a subclass inherits:
    - ``hf_problem_type``: transformers' ``problem_type`` for the loss it trains with, where transformers' equivalent
      task model reads one (its sequence classifiers: ``"single_label_classification"``,
      ``"multi_label_classification"``, ``"regression"``); ``ModelWithHead.toHuggingFace`` writes it into the exported
      config (a task declaring none: ``None``, and transformers guesses from the labels), and ``archit inspect`` reads
      it back to tell which task a transformers checkpoint is;
    - ``purpose``: what the task is, in words (``archit inspect`` says it; a task declaring none is named by its class).
"""
import dataclasses
from typing import Optional, Tuple, Union

import torch
from torch import FloatTensor, Tensor, nn
from torch.nn.modules.loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, _Loss
from transformers import GenerationConfig

from .. import _compat as compat
from .abstracts import AllHiddenStatesAndPooling, BaseModel, BaseModelConfig, Head, HeadConfig, ModelWithHead, flatLoss
from .configs import PC, CombinedConfig
from .extensions import ForNestedBatches, ForTokensGroupedByWord, PoolingAndStridingConfig
from .heads import (
    CausalLMHead,
    CausalLMHeadConfig,
    DependencyParsingHead,
    DependencyParsingHeadConfig,
    ExtractiveAQAHead,
    ExtractiveAQAHeadConfig,
    ExtractiveQAHead,
    ExtractiveQAHeadConfig,
    MaskedLMHead,
    MaskedLMHeadConfig,
    SequenceClassificationHead,
    SequenceClassificationHeadConfig,
    SequenceClassificationHeadForNestedBatches,
    TokenClassificationHead,
    TokenClassificationHeadConfig,
)

TASKS = ["ForSingleLabelTokenClassification", "ForSingleLabelSequenceClassification",
         "ForMultiLabelSequenceClassification", "ForSequenceRegression", "ForExtractiveQA", "ForCausalLM", "ForMaskedLM",
         "ForExtractiveAQA", "ForSingleAnswerMultipleChoice", "ForDependencyParsing"]
"""The tasks of this module, by name (``tests/test_every_task.py`` runs each)."""
# What ``from archit.instantiation.tasks import *`` gave with the published ArchIt (which had no ``__all__``): the
# tasks, and the heads, configs, classes and torch names it imported.
__all__ = [*TASKS, "AllHiddenStatesAndPooling", "BaseModel", "BaseModelConfig", "CombinedConfig", "Head",
           "HeadConfig", "ModelWithHead", "PC", "ForNestedBatches", "ForTokensGroupedByWord", "PoolingAndStridingConfig",
           "CausalLMHead", "CausalLMHeadConfig", "DependencyParsingHead", "DependencyParsingHeadConfig",
           "ExtractiveAQAHead", "ExtractiveAQAHeadConfig", "ExtractiveQAHead", "ExtractiveQAHeadConfig", "MaskedLMHead",
           "MaskedLMHeadConfig", "SequenceClassificationHead", "SequenceClassificationHeadConfig",
           "SequenceClassificationHeadForNestedBatches", "TokenClassificationHead", "TokenClassificationHeadConfig",
           "BCEWithLogitsLoss", "CrossEntropyLoss", "MSELoss", "FloatTensor", "Tensor", "Tuple", "nn", "torch"]


class ForSingleLabelTokenClassification(ModelWithHead[PC, TokenClassificationHeadConfig]):
    """One class per token; labels B x L with -100 for tokens without a label."""
    head_class = TokenClassificationHead
    purpose = "token classification"


class ForSingleLabelSequenceClassification(ModelWithHead[PC, SequenceClassificationHeadConfig]):
    """One class per text; labels B, integers in [0, num_labels)."""
    head_class = SequenceClassificationHead
    hf_problem_type = "single_label_classification"
    purpose = "sequence classification (single label)"


class ForMultiLabelSequenceClassification(ModelWithHead[PC, SequenceClassificationHeadConfig]):
    """Any number of classes per text; labels B x num_labels of 0/1."""
    head_class = SequenceClassificationHead
    loss_class = BCEWithLogitsLoss
    hf_problem_type = "multi_label_classification"
    purpose = "sequence classification (multi-label)"

    def computeLoss(self, logits: Tensor, labels: Tensor) -> FloatTensor:
        return self.loss_function(logits, labels.to(logits.device, logits.dtype))


class ForSequenceRegression(ModelWithHead[PC, SequenceClassificationHeadConfig]):
    """num_labels real numbers per text; labels B (num_labels 1) or B x num_labels."""
    head_class = SequenceClassificationHead
    loss_class = MSELoss
    hf_problem_type = "regression"
    purpose = "sequence regression"

    def computeLoss(self, logits: Tensor, labels: Tensor) -> FloatTensor:
        labels = labels.to(logits.device, logits.dtype)
        if self.config.head_config.num_labels == 1:
            return self.loss_function(logits.squeeze(), labels.squeeze())
        return self.loss_function(logits, labels)


class ForExtractiveQA(ModelWithHead[PC, ExtractiveQAHeadConfig]):
    """Answer span in the context; labels B x 2 (start, end), or, as transformers' ``XForQuestionAnswering`` takes them,
    ``start_positions`` and ``end_positions`` (B each). Positions past the input are ignored. Logits B x L x 2 (start,
    end); with ``return_dict=False`` the tuple holds them as transformers' does, start and end logits apart."""
    head_class = ExtractiveQAHead
    purpose = "extractive question answering"
    label_keywords = ("start_positions", "end_positions")

    def computeLoss(self, logits: Tensor, labels: Tensor) -> FloatTensor:
        return extractiveQALoss(self.loss_function, logits, labels.to(logits.device))

    def labelsFromKeywords(self, start_positions: Tensor, end_positions: Tensor) -> Tensor:  # type: ignore[override]
        """``labels`` B x 2 from transformers' ``start_positions`` and ``end_positions`` (B or B x 1 each)."""
        return answerSpans(start_positions, end_positions)

    def transformersLogits(self, logits: Tensor) -> Tuple[Tensor, Tensor]:
        """Start and end logits (B x L each), as transformers' ``XForQuestionAnswering`` returns them."""
        return splitSpanLogits(logits)


def answerSpans(start_positions: Tensor, end_positions: Tensor) -> Tensor:
    """Start and end positions (B, or B x 1 as some data collators give them) as archit's QA labels, B x 2."""
    return torch.stack([start_positions.reshape(-1), end_positions.reshape(-1).to(start_positions.device)], dim=-1)


def splitSpanLogits(logits: Tensor) -> Tuple[Tensor, Tensor]:
    """B x L x 2 span logits as transformers' start and end logits, B x L each."""
    start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
    return start_logits, end_logits


def extractiveQALoss(loss_function: _Loss, logits: Tensor, labels: Tensor) -> FloatTensor:
    """
    Mean of the start and end cross-entropies, as transformers' QA models compute it: positions are clamped to
    [0, L], and position L (past the input) is ignored. Such positions are given the loss's own ``ignore_index``
    (-100 for a loss without one), so that the loss module, which may be the caller's, is never changed.
    """
    start_logits, end_logits = splitSpanLogits(logits)
    length = start_logits.size(1)
    ignore_index = getattr(loss_function, "ignore_index", -100)
    clamped = (t.reshape(-1).clamp(0, length) for t in labels.split(1, dim=-1))
    start_positions, end_positions = (p.masked_fill(p == length, ignore_index) for p in clamped)
    return (loss_function(start_logits, start_positions) + loss_function(end_logits, end_positions)) / 2


class ForCausalLM(ModelWithHead[PC, CausalLMHeadConfig], compat.GenerationMixin):
    """
    Next-token prediction; labels B x L (usually the input ids), shifted inside.

    Generates as transformers' ``XForCausalLM`` models do, with the installed release's ``GenerationMixin``
    (``generate``: greedy, sampling, beam search, ...), the key-value cache kept by the base model. Its
    ``generation_config`` is built from the base model's config as transformers builds a causal LM's (special tokens),
    replaced by the checkpoint's ``generation_config.json`` when loading one that has it, and saved with the model.
    """
    head_class = CausalLMHead
    purpose = "causal language modelling"
    returns_cross_attentions = True  # As transformers' causal LMs (GPT-2's; none where the body has none).

    def __init__(self, combined_config: CombinedConfig, model: BaseModel, head: Head, loss: _Loss):
        super().__init__(combined_config, model, head, loss)
        # transformers builds a causal LM's from its config; a model-with-head's generation settings are its body's.
        self.generation_config = GenerationConfig.from_model_config(combined_config.base_model_config)

    def computeLoss(self, logits: Tensor, labels: Tensor) -> FloatTensor:
        return flatLoss(self.loss_function, logits[:, :-1, :], labels[:, 1:])

    def get_output_embeddings(self) -> Optional[nn.Linear]:
        return self.head.dense

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.head.dense = new_embeddings


class ForMaskedLM(ModelWithHead[PC, MaskedLMHeadConfig]):
    """Masked-token prediction; labels B x L with -100 for tokens that were not masked."""
    head_class = MaskedLMHead
    purpose = "masked language modelling"

    def get_output_embeddings(self) -> Optional[nn.Linear]:
        return self.head.dense2

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.head.dense2 = new_embeddings


class ForExtractiveAQA(ModelWithHead[PC, ExtractiveAQAHeadConfig]):
    """
    Extractive QA with answerability: is the question answerable from the context (UA), and if so, where is the answer.
    Logits ``(qa B x L x 2, ua B x 2)``; labels ``(qa_labels B x 2 (start, end), ua_labels B)`` with ua label 1 for an
    answerable and 0 for an unanswerable example (either may be ``None``). The loss is the extractive QA loss over the
    answerable examples only (0 when the batch has none) plus ``ua_loss_weight`` times the UA cross-entropy; with only
    one kind of label, it is that term alone (unweighted). The UA prediction does not decide which examples count.
    As ``ForExtractiveQA``, it also takes transformers' ``start_positions`` and ``end_positions``: QA labels without
    UA labels (the span loss alone, every example counting).
    """
    head_class = ExtractiveAQAHead
    purpose = "extractive question answering with answerability"
    label_keywords = ForExtractiveQA.label_keywords

    def labelsFromKeywords(self, start_positions: Tensor,  # type: ignore[override]
                           end_positions: Tensor) -> Tuple[Tensor, None]:
        """``labels`` ``(qa_labels, None)`` from transformers' ``start_positions`` and ``end_positions``."""
        return answerSpans(start_positions, end_positions), None

    def computeLoss(self, logits: Tuple[Tensor, Tensor],
                    labels: Tuple[Optional[Tensor], Optional[Tensor]]) -> FloatTensor:
        qa_logits, ua_logits = logits
        qa_labels, ua_labels = labels
        if qa_labels is None and ua_labels is None:
            raise ValueError("ForExtractiveAQA needs qa_labels or ua_labels (labels=(qa_labels, ua_labels)).")
        ua_loss = None
        if ua_labels is not None:
            ua_labels = ua_labels.to(ua_logits.device).reshape(-1).long()
            ua_loss = self.loss_function(ua_logits.view(-1, 2), ua_labels)
        if qa_labels is None:
            return ua_loss
        qa_labels = qa_labels.to(qa_logits.device)
        if ua_labels is not None:
            answerable = ua_labels.to(qa_logits.device).eq(1)
            qa_logits, qa_labels = qa_logits[answerable], qa_labels[answerable]
        if qa_logits.size(0) == 0:
            qa_loss = qa_logits.sum() * 0  # No answerable example: no QA loss, and no NaN from a mean over nothing.
        else:
            qa_loss = extractiveQALoss(self.loss_function, qa_logits, qa_labels)
        if ua_loss is None:
            return qa_loss
        return qa_loss + self.config.head_config.ua_loss_weight * ua_loss


class ForSingleAnswerMultipleChoice(ForNestedBatches[PC, SequenceClassificationHeadConfig]):
    """
    Multiple choice with one right answer: ``input_ids``/``attention_mask`` B x C x L hold the C (question, choice)
    sequences of each example; each is scored with one logit (``SequenceClassificationHeadForNestedBatches``, logits
    B x C x 1), and the loss is the cross-entropy over the C choices against labels B (the right choice's index).

    The head scores with exactly one label. ``num_labels`` defaults to 0 ("not set") in head configs, so a head config
    with ``num_labels=0`` gets 1 filled in (in a copy, which is what the model's config holds and saves); any other value
    than 0 or 1 is a ``ValueError``. (Several scores per choice, e.g. multi-task multiple choice, are not supported.)
    """
    head_class = SequenceClassificationHeadForNestedBatches
    purpose = "multiple choice"

    def __init__(self, combined_config: CombinedConfig, model: BaseModel, head: Head, loss: _Loss):
        super().__init__(combined_config, model, head, loss)
        if head.dense2.out_features != 1:
            raise ValueError(f"{type(self).__name__} scores each choice with one logit: its head needs num_labels=1, "
                             f"got {head.dense2.out_features}.")

    @classmethod
    def fromModelAndHeadConfig(cls, base_model: BaseModel, head_config: SequenceClassificationHeadConfig,
                               loss: Optional[_Loss] = None) -> "ForSingleAnswerMultipleChoice":
        return super().fromModelAndHeadConfig(base_model, cls.oneScorePerChoice(head_config), loss)

    @classmethod
    def oneScorePerChoice(cls, head_config: SequenceClassificationHeadConfig) -> SequenceClassificationHeadConfig:
        """``head_config`` with ``num_labels=1``: a copy when it was 0 (not set), itself when 1, an error otherwise."""
        if head_config.num_labels == 0:
            return dataclasses.replace(head_config, num_labels=1)
        if head_config.num_labels != 1:
            raise ValueError(f"{cls.__name__} scores each choice with one logit: its head config needs num_labels=1 "
                             f"(or 0, filled in as 1), got num_labels={head_config.num_labels}.")
        return head_config

    def computeLoss(self, logits: Tensor, labels: Tensor) -> FloatTensor:
        """``logits`` B x C x 1 (or B x C), ``labels`` B (or B x 1)."""
        if logits.dim() == 3:
            logits = logits.squeeze(-1)
        return self.loss_function(logits, labels.to(logits.device).reshape(-1))


class ForDependencyParsing(ForTokensGroupedByWord[PC, DependencyParsingHeadConfig]):
    """
    Biaffine dependency parsing (as supar's ``BiaffineDependencyModel``) on words: ``input_ids`` B x W x S (see
    ``ForTokensGroupedByWord``; the word at position 0 is usually the root, e.g. ``<s>`` in a word of its own).
    Labels ``(arcs B x W, relations B x W)``: each word's head position and relation label, -100 for words without
    (padding, the root). The loss is the cross-entropy over head positions for every word with an arc label, plus, when
    the head config has relation labels (``num_labels`` > 0), the cross-entropy of the relation scores at the gold head
    for every word with both labels. Unlabeled (``num_labels`` 0) parsing ignores relation labels, which may then be
    absent: ``labels`` may be the arcs tensor alone.
    """
    head_class = DependencyParsingHead
    purpose = "dependency parsing"

    def __init__(self, combined_config: CombinedConfig, model: BaseModel, head: Head, loss: _Loss):
        super().__init__(combined_config, combined_config.head_config.extended_model_config, model, head, loss)

    def computeLoss(self, logits: Tuple[Tensor, Tensor],
                    labels: Union[Tensor, Tuple[Tensor, ...]]) -> FloatTensor:
        arc_scores, relation_scores = logits
        if isinstance(labels, Tensor):
            arc_labels, relation_labels = labels, None
        else:
            arc_labels, relation_labels = (tuple(labels) + (None,))[:2]
        arc_labels = arc_labels.to(arc_scores.device)
        words = arc_labels.ge(0)  # B x W
        if not bool(words.any()):
            return (arc_scores * 0).sum()
        loss = self.loss_function(arc_scores[words], arc_labels[words])
        if self.config.head_config.num_labels == 0:
            return loss
        if relation_labels is None:
            raise ValueError("ForDependencyParsing with relation labels (num_labels > 0) needs labels=(arcs, relations).")
        relation_labels = relation_labels.to(arc_scores.device)
        labeled = words & relation_labels.ge(0)
        if bool(labeled.any()):
            at_gold_head = relation_scores[labeled][torch.arange(int(labeled.sum()), device=arc_scores.device),
                                                    arc_labels[labeled]]  # N x R
            loss = loss + self.loss_function(at_gold_head, relation_labels[labeled])
        return loss
