"""Sequence-level tasks (no transformers equivalent for archit's mean-pooling head): logits recomputed by hand from
transformers' hidden states and the head's tensors; losses recomputed with torch.nn.functional."""
import pytest
import torch
import torch.nn.functional as F

from archit.instantiation import tasks
from archit.instantiation.heads import SequenceClassificationHeadConfig

from tests.helpers import ARCHS, assert_close, load_archit, make_inputs, transformers_reference

ROBERTA = ARCHS["roberta"]


def expected_sequence_logits(model, directory, input_ids, attention_mask):
    """mean over unmasked positions -> dense1 -> tanh -> dense2, on transformers' own hidden states."""
    reference = transformers_reference(ROBERTA.core, directory)
    with torch.no_grad():
        hidden = reference(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
    head = model.head
    x = torch.tanh(F.linear(pooled, head.dense1.weight, head.dense1.bias))
    return F.linear(x, head.dense2.weight, head.dense2.bias)


def load_sequence_task(task_name, directory, num_labels):
    return load_archit(getattr(tasks, task_name), directory, ROBERTA,
                       head_config=SequenceClassificationHeadConfig(num_labels=num_labels))


def test_single_label_sequence_classification(roberta_bare):
    model = load_sequence_task("ForSingleLabelSequenceClassification", roberta_bare, 3)
    input_ids, attention_mask = make_inputs()
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert_close(out.logits, expected_sequence_logits(model, roberta_bare, input_ids, attention_mask))
    assert_close(out.loss, F.cross_entropy(out.logits, labels))


def test_multi_label_sequence_classification(roberta_bare):
    model = load_sequence_task("ForMultiLabelSequenceClassification", roberta_bare, 4)
    input_ids, attention_mask = make_inputs()
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert_close(out.logits, expected_sequence_logits(model, roberta_bare, input_ids, attention_mask))
    assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, labels))


@pytest.mark.parametrize("num_labels", [1, 2])
def test_sequence_regression(roberta_bare, num_labels):
    model = load_sequence_task("ForSequenceRegression", roberta_bare, num_labels)
    input_ids, attention_mask = make_inputs()
    labels = torch.randn(2, num_labels, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert out.logits.shape == (2, num_labels)
    assert_close(out.logits, expected_sequence_logits(model, roberta_bare, input_ids, attention_mask))
    assert_close(out.loss, F.mse_loss(out.logits, labels))

