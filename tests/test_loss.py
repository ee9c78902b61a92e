"""Per-instance loss: ``from_pretrained(..., loss=module)`` and ``fromModelAndHeadConfig(..., loss=module)`` use the given
module (here class-weighted cross-entropy, compared with ``torch.nn.functional.cross_entropy(weight=...)``), which is a
setting of the instance: it is not saved with the weights, and a reload uses whatever loss it is given."""
import torch
import torch.nn.functional as F

from archit.instantiation.heads import (
    ExtractiveQAHeadConfig,
    SequenceClassificationHeadConfig,
    TokenClassificationHeadConfig,
)
from archit.instantiation.tasks import (
    ForExtractiveQA,
    ForSingleLabelSequenceClassification,
    ForSingleLabelTokenClassification,
)

from tests.helpers import (
    ARCHS,
    SEQ_LEN,
    assert_close,
    load_archit,
    make_inputs,
    read_checkpoint_tensors,
    save_transformers_model,
)

CLASS_WEIGHTS = torch.tensor([0.2, 1.0, 5.0])


def token_labels(input_ids, attention_mask):
    labels = torch.randint(0, 3, input_ids.shape, generator=torch.Generator().manual_seed(3))
    return labels.masked_fill(attention_mask == 0, -100)


def test_weighted_loss_from_pretrained(roberta_bare, tmp_path):
    loss = torch.nn.CrossEntropyLoss(weight=CLASS_WEIGHTS)
    model = load_archit(ForSingleLabelTokenClassification, roberta_bare, ARCHS["roberta"],
                        head_config=TokenClassificationHeadConfig(num_labels=3), loss=loss)
    assert model.loss_function is loss
    input_ids, attention_mask = make_inputs()
    labels = token_labels(input_ids, attention_mask)
    out = model(input_ids, attention_mask, labels=labels)
    expected = F.cross_entropy(out.logits.reshape(-1, 3), labels.reshape(-1), weight=CLASS_WEIGHTS, ignore_index=-100)
    assert_close(out.loss, expected)
    unweighted = F.cross_entropy(out.logits.reshape(-1, 3), labels.reshape(-1), ignore_index=-100)
    assert not torch.allclose(out.loss, unweighted)  # The weights matter on this batch.

    # The loss is not part of the checkpoint; a reload without it uses the task's default loss.
    model.save_pretrained(str(tmp_path))
    assert not any("loss" in key for key in read_checkpoint_tensors(tmp_path))
    assert not any("loss" in key for key in model.state_dict())
    reloaded = load_archit(ForSingleLabelTokenClassification, tmp_path, ARCHS["roberta"])
    again = reloaded(input_ids, attention_mask, labels=labels)
    assert_close(again.logits, out.logits)
    assert_close(again.loss, unweighted)


def test_weighted_loss_from_model_and_head_config():
    arch = ARCHS["bert"]
    loss = torch.nn.CrossEntropyLoss(weight=CLASS_WEIGHTS)
    model = ForSingleLabelSequenceClassification.fromModelAndHeadConfig(
        arch.base_class(arch.make_config()), SequenceClassificationHeadConfig(num_labels=3), loss=loss).eval()
    input_ids, attention_mask = make_inputs()
    labels = torch.tensor([2, 0])
    out = model(input_ids, attention_mask, labels=labels)
    assert_close(out.loss, F.cross_entropy(out.logits, labels, weight=CLASS_WEIGHTS))
    # Its buffers follow the model (dtype here; the device likewise).
    model.double()
    assert model.loss_function.weight.dtype == torch.float64


class _RecordingCrossEntropy(torch.nn.CrossEntropyLoss):
    """Cross-entropy that records the ``ignore_index`` it computes with."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, logits, target):
        self.seen.append(self.ignore_index)
        return super().forward(logits, target)


class _PlainCrossEntropy(torch.nn.Module):
    """A loss module without an ``ignore_index`` attribute (F.cross_entropy ignores -100)."""

    def forward(self, logits, target):
        return F.cross_entropy(logits, target)


def test_extractive_qa_loss_leaves_the_given_loss_unchanged(tmp_path):
    """Start/end positions past the input (L or more) are ignored and negative ones count as 0, as in transformers'
    QA models, without setting ``ignore_index`` on the caller's loss module (not even for the duration of the call)."""
    arch = ARCHS["roberta"]
    reference = save_transformers_model(arch.question_answering, arch.make_config(), tmp_path)
    input_ids, attention_mask = make_inputs()
    labels = torch.tensor([[SEQ_LEN, 99], [-5, 3]])  # Ignored, ignored; start 0, end 3.
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask,
                             start_positions=labels[:, 0], end_positions=labels[:, 1]).loss
    for loss in (None, _RecordingCrossEntropy(), _PlainCrossEntropy()):
        model = load_archit(ForExtractiveQA, tmp_path, arch, head_config=ExtractiveQAHeadConfig(), loss=loss)
        with torch.no_grad():
            out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        start_logits, end_logits = out.logits[1:, :, 0], out.logits[1:, :, 1]
        assert_close(out.loss, (F.cross_entropy(start_logits, labels[1:, 0].clamp(0)) +
                                F.cross_entropy(end_logits, labels[1:, 1])) / 2)
        assert_close(out.loss, expected)
        if isinstance(loss, _RecordingCrossEntropy):
            assert loss.seen == [-100, -100] and loss.ignore_index == -100
        if isinstance(loss, _PlainCrossEntropy):
            assert "ignore_index" not in vars(loss)
