"""Training behaves as transformers' own task model: same gradients on the same weights, gradient checkpointing
passed to the core, and the transformers ``Trainer`` runs, lowers the loss and passes archit's models no loss
arguments (their losses average themselves)."""
from typing import Optional

import pytest
import torch
from transformers import RobertaForTokenClassification, Trainer, TrainingArguments

from archit import _compat as compat
from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import (
    DependencyParsingHeadConfig,
    SequenceClassificationHeadConfig,
    TokenClassificationHeadConfig,
)
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import (
    ForDependencyParsing,
    ForSingleLabelSequenceClassification,
    ForSingleLabelTokenClassification,
)

from tests.helpers import BATCH, SEQ_LEN, VOCAB, assert_same_outputs, roberta_config

NUM_LABELS = 3


def _pair(tmp_path):
    torch.manual_seed(0)
    reference = RobertaForTokenClassification(roberta_config(num_labels=NUM_LABELS))
    reference.save_pretrained(tmp_path)
    model = ForSingleLabelTokenClassification.from_pretrained(
        tmp_path, RobertaBaseModel, TokenClassificationHeadConfig(num_labels=NUM_LABELS), attn_implementation="eager")
    return reference, model


def _batch():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, VOCAB, (BATCH, SEQ_LEN), generator=generator)
    labels = torch.randint(0, NUM_LABELS, (BATCH, SEQ_LEN), generator=generator)
    labels[:, 0] = -100
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def _gradients(model, prefix_from: str, prefix_to: str):
    return {name.replace(prefix_from, prefix_to, 1): p.grad for name, p in model.named_parameters() if p.grad is not None}


def test_gradients_equal_transformers_model(tmp_path):
    reference, model = _pair(tmp_path)
    reference.eval(), model.eval()  # No dropout: both must compute exactly the same function.
    reference(**_batch()).loss.backward()
    model(**_batch()).loss.backward()
    expected = _gradients(reference, "roberta.", "model._core.")
    expected = {k.replace("classifier.", "head.dense."): v for k, v in expected.items()}
    actual = _gradients(model, "", "")
    assert set(actual) == set(expected)
    for name, gradient in actual.items():
        torch.testing.assert_close(gradient, expected[name], atol=1e-5, rtol=1e-4, msg=name)


def test_gradient_checkpointing_reaches_the_core_and_keeps_gradients(tmp_path):
    _, model = _pair(tmp_path)
    model.train()
    torch.manual_seed(2)
    model(**_batch()).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    # use_reentrant explicitly: 4.36-4.37 leave it to torch, which warns that it must be passed.
    compat.enable_activation_checkpointing(model, {"use_reentrant": False})
    assert compat.is_activation_checkpointing(model.base_model)
    torch.manual_seed(2)
    model(**_batch()).loss.backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, plain[name], msg=name)

    compat.disable_activation_checkpointing(model)
    assert not compat.is_activation_checkpointing(model.base_model)


class _Repeated(torch.utils.data.Dataset):
    def __init__(self, batch):
        self.rows = [{k: v[i] for k, v in batch.items()} for i in range(BATCH)]

    def __len__(self):
        return 16

    def __getitem__(self, index):
        return self.rows[index % BATCH]


def test_trainer_trains_and_saves(tmp_path):
    _, model = _pair(tmp_path / "start")
    batch = _batch()
    with torch.no_grad():
        before = model.eval()(**batch).loss.item()
    arguments = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=BATCH, max_steps=20,
                                  learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True)
    trainer = Trainer(model=model, args=arguments, train_dataset=_Repeated(batch))
    trainer.train()
    with torch.no_grad():
        after = model.eval()(**batch).loss.item()
    assert after < before

    trainer.save_model(str(tmp_path / "saved"))
    reloaded = ForSingleLabelTokenClassification.from_pretrained(tmp_path / "saved", RobertaBaseModel,
                                                                 attn_implementation="eager")
    with torch.no_grad():
        assert_same_outputs(reloaded(**batch).logits, model(**batch).logits)


def test_trainer_update_with_gradient_accumulation_equals_transformers(tmp_path):
    """One optimiser step over two accumulated batches moves archit's weights exactly as transformers' model's."""
    reference, model = _pair(tmp_path / "start")
    batch = _batch()

    def train(m, name):
        arguments = TrainingArguments(output_dir=str(tmp_path / name), per_device_train_batch_size=1,
                                      gradient_accumulation_steps=2, max_steps=1, learning_rate=1e-1, report_to=[],
                                      save_strategy="no", use_cpu=True, seed=0)
        for module in m.modules():  # No dropout, so that both compute the same function.
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        Trainer(model=m, args=arguments, train_dataset=_Repeated(batch)).train()

    train(reference, "reference")
    train(model, "archit")
    torch.testing.assert_close(model.head.dense.weight, reference.classifier.weight, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.base_model.embeddings.word_embeddings.weight,
                               reference.roberta.embeddings.word_embeddings.weight, atol=1e-5, rtol=1e-4)


class _LossKwargsVisible(torch.nn.Module):
    """A model whose ``forward`` shows ``**loss_kwargs``, by which transformers' Trainer knows one that normalises its
    own loss (4.46 look for that name, 4.47+ for any ``**``)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)

    def forward(self, input_ids, labels=None, **loss_kwargs):
        return loss_kwargs


class _LossKwargsHidden(_LossKwargsVisible):
    @compat.hide_kwargs_from_signature
    def forward(self, input_ids, labels=None, **loss_kwargs):
        return loss_kwargs


def _trainer_passes_loss_kwargs(model: torch.nn.Module, tmp_path) -> Optional[bool]:
    """Whether the installed Trainer would pass ``num_items_in_batch`` to ``model`` (and leave the loss undivided by
    the accumulation steps), as it decides when built (4.46+); ``None`` before 4.46, which never pass it."""
    arguments = TrainingArguments(output_dir=str(tmp_path), report_to=[], save_strategy="no", use_cpu=True)
    return getattr(Trainer(model=model, args=arguments), "model_accepts_loss_kwargs", None)


def _several_heads():
    return ModelWithHeads.fromModelAndHeadConfigs(RobertaBaseModel(roberta_config()), {
        "ner": (ForSingleLabelTokenClassification, TokenClassificationHeadConfig(num_labels=5)),
        "sentiment": (ForSingleLabelSequenceClassification, SequenceClassificationHeadConfig(num_labels=3))})


@pytest.mark.parametrize("build", [
    lambda: ForSingleLabelTokenClassification.fromModelAndHeadConfig(
        RobertaBaseModel(roberta_config()), TokenClassificationHeadConfig(num_labels=NUM_LABELS)),
    lambda: ForDependencyParsing.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()),
                                                        DependencyParsingHeadConfig(num_labels=3)),
    _several_heads,
], ids=["ModelWithHead", "ForTokensGroupedByWord", "ModelWithHeads"])
def test_the_trainer_passes_no_loss_kwargs(build, tmp_path):
    """archit's losses average themselves: the Trainer must not pass ``num_items_in_batch`` (4.46-4.47 decide by
    ``forward``'s signature, whose ``**kwargs`` the compat decorator hides; 4.48+ by ``accepts_loss_kwargs``)."""
    assert not _trainer_passes_loss_kwargs(build(), tmp_path)  # False, or None before 4.46


def test_hiding_kwargs_is_what_turns_the_trainer(tmp_path):
    """The same question of a plain module, whose only answer is its signature: the Trainer (4.46+) passes loss
    arguments to the one that shows ``**kwargs``, not to the one whose ``**kwargs`` the compat decorator hides."""
    visible = _trainer_passes_loss_kwargs(_LossKwargsVisible(), tmp_path)
    if visible is None:
        pytest.skip("this Trainer (before 4.46) never passes loss arguments")
    assert visible is True
    assert _trainer_passes_loss_kwargs(_LossKwargsHidden(), tmp_path) is False
    assert _LossKwargsHidden()(1, num_items_in_batch=2) == {"num_items_in_batch": 2}  # Calls still reach **kwargs.


def _accuracy(prediction) -> dict:
    """A compute_metrics as users write it for token classification: arg-max accuracy over labelled tokens."""
    predicted = prediction.predictions.argmax(-1)
    labelled = prediction.label_ids != -100
    return {"accuracy": float((predicted[labelled] == prediction.label_ids[labelled]).mean())}


def test_trainer_evaluate_and_predict_with_compute_metrics_as_transformers(tmp_path):
    """evaluate and predict give the predictions (the logits), labels, loss and metrics of transformers' own class on
    the same weights."""
    reference, model = _pair(tmp_path / "start")
    batch = _batch()
    results = {}
    for name, m in (("reference", reference), ("archit", model)):
        arguments = TrainingArguments(output_dir=str(tmp_path / name), per_device_eval_batch_size=3, report_to=[],
                                      use_cpu=True)
        trainer = Trainer(model=m, args=arguments, compute_metrics=_accuracy)
        results[name] = (trainer.evaluate(_Repeated(batch)), trainer.predict(_Repeated(batch)))
    (expected_metrics, expected), (metrics, predicted) = results["reference"], results["archit"]
    assert predicted.predictions.shape == (16, SEQ_LEN, NUM_LABELS)
    torch.testing.assert_close(torch.from_numpy(predicted.predictions), torch.from_numpy(expected.predictions),
                               atol=1e-5, rtol=1e-4)
    assert (predicted.label_ids == expected.label_ids).all()
    assert metrics["eval_accuracy"] == expected_metrics["eval_accuracy"] == predicted.metrics["test_accuracy"]
    assert abs(metrics["eval_loss"] - expected_metrics["eval_loss"]) < 1e-5
