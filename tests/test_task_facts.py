"""What tasks and heads declare about their transformers equivalents (``hf_problem_type``, ``hf_config_fields``,
``hf_equivalent_config``, ``purpose``) is read from the class, so a user's subclass inherits it: exported, a subclass of
``ForSequenceRegression`` is a transformers sequence classifier that trains with the MSE loss (as transformers computes
it for ``problem_type="regression"``), not with the multi-label loss transformers guesses for float labels; imported, a
transformers task checkpoint gives a subclass the head config its parent would get; ``archit inspect`` names what a
subclass does as its parent does."""
import pytest
import torch
import transformers
from torch.nn import functional as F

from archit.cli.classes import task_head, transformers_head, transformers_task
from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import (
    MaskedLMHeadConfig,
    SequenceClassificationHead,
    SequenceClassificationHeadConfig,
    TokenClassificationHead,
    TokenClassificationHeadConfig,
)
from archit.instantiation.tasks import (
    ForMaskedLM,
    ForMultiLabelSequenceClassification,
    ForSequenceRegression,
    ForSingleLabelSequenceClassification,
    ForSingleLabelTokenClassification,
)

from tests.helpers import make_inputs, perturb_, read_json, roberta_config, save_transformers_model

NUM_LABELS = 3


class MyRegression(ForSequenceRegression):
    """A user's task: the published regression with nothing declared."""


class MyMultiLabel(ForMultiLabelSequenceClassification):
    pass


class MySingleLabel(ForSingleLabelSequenceClassification):
    pass


class MyTaggerHead(TokenClassificationHead):
    pass


class MyTagger(ForSingleLabelTokenClassification):
    head_class = MyTaggerHead


def regression_labels(batch: int) -> torch.Tensor:
    return torch.randn(batch, NUM_LABELS, generator=torch.Generator().manual_seed(1))


def multi_label_labels(batch: int) -> torch.Tensor:
    return torch.randint(0, 2, (batch, NUM_LABELS), generator=torch.Generator().manual_seed(1)).float()


def single_label_labels(batch: int) -> torch.Tensor:
    return torch.randint(0, NUM_LABELS, (batch,), generator=torch.Generator().manual_seed(1))


# task, its transformers problem_type, labels, the loss transformers computes for that problem_type
SEQUENCE_TASKS = {
    "regression": (MyRegression, "regression", regression_labels, F.mse_loss),
    "multi-label": (MyMultiLabel, "multi_label_classification", multi_label_labels, F.binary_cross_entropy_with_logits),
    "single-label": (MySingleLabel, "single_label_classification", single_label_labels, F.cross_entropy),
}


def build(task: type) -> torch.nn.Module:
    torch.manual_seed(0)
    model = task.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()),
                                        SequenceClassificationHeadConfig(num_labels=NUM_LABELS, pooling="first"))
    return perturb_(model).eval()


@pytest.mark.parametrize("case", sorted(SEQUENCE_TASKS))
def test_a_subclass_exports_with_its_tasks_problem_type(case, tmp_path):
    """The exported model is transformers' sequence classifier with the task's problem_type, so transformers computes
    the task's loss on the same labels: archit's loss, and the loss of that problem_type computed here."""
    task, problem, make_labels, expected_loss = SEQUENCE_TASKS[case]
    model = build(task)
    input_ids, attention_mask = make_inputs()
    labels = make_labels(input_ids.size(0))
    exported = model.toHuggingFace()
    assert type(exported) is transformers.RobertaForSequenceClassification
    assert exported.config.problem_type == problem
    ours = model(input_ids, attention_mask, labels=labels)
    theirs = exported(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(theirs.logits, ours.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(theirs.loss, ours.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(theirs.loss, expected_loss(theirs.logits, labels), atol=1e-6, rtol=1e-6)

    exported.save_pretrained(str(tmp_path))  # The problem_type travels with the checkpoint ...
    assert read_json(tmp_path / "config.json")["problem_type"] == problem
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path)).eval()
    again = reloaded(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(again.loss, theirs.loss, atol=1e-5, rtol=1e-5)
    # ... and archit inspect reads it back as the task it was exported from.
    assert transformers_task(RobertaBaseModel, read_json(tmp_path / "config.json")) is task.__mro__[1]


def test_without_the_problem_type_transformers_trains_a_regression_as_multi_label():
    """Why the problem_type must be exported: on float labels of several outputs, transformers' own guess is the
    multi-label loss."""
    model = build(MyRegression)
    exported = model.toHuggingFace()
    exported.config.problem_type = None
    input_ids, attention_mask = make_inputs()
    labels = regression_labels(input_ids.size(0))
    guessed = exported(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert exported.config.problem_type == "multi_label_classification"
    torch.testing.assert_close(guessed.loss, F.binary_cross_entropy_with_logits(guessed.logits, labels))
    assert not torch.allclose(guessed.loss, model(input_ids, attention_mask, labels=labels).loss)


def test_a_task_declaring_no_problem_type_exports_none():
    """A task of one's own on the sequence head says nothing about its loss: transformers guesses, as before."""
    class Scorer(ForSingleLabelSequenceClassification):
        hf_problem_type = None

    assert build(Scorer).toHuggingFace().config.problem_type is None
    assert build(MySingleLabel).toHuggingFace().config.problem_type == "single_label_classification"


def test_a_subclass_imports_a_transformers_checkpoint_as_its_parent_does(tmp_path):
    """Loaded without a head config, a transformers task checkpoint gives the subclass the head config the head class
    declares: num_labels from id2label, first-token pooling; tie_weights from tie_word_embeddings."""
    save_transformers_model(transformers.RobertaForSequenceClassification, roberta_config(num_labels=NUM_LABELS),
                            tmp_path / "sequence")
    model = MyRegression.from_pretrained(str(tmp_path / "sequence"), RobertaBaseModel)
    assert model.config.head_config == SequenceClassificationHeadConfig(num_labels=NUM_LABELS, pooling="first")
    reference = transformers.RobertaForSequenceClassification.from_pretrained(str(tmp_path / "sequence")).eval()
    input_ids, attention_mask = make_inputs()
    torch.testing.assert_close(model.eval()(input_ids, attention_mask).logits,
                               reference(input_ids=input_ids, attention_mask=attention_mask).logits,
                               atol=1e-4, rtol=1e-4)

    save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=5), tmp_path / "tags")
    tagger = MyTagger.from_pretrained(str(tmp_path / "tags"), RobertaBaseModel)
    assert type(tagger.head) is MyTaggerHead
    assert tagger.config.head_config == TokenClassificationHeadConfig(num_labels=5)

    save_transformers_model(transformers.RobertaForMaskedLM, roberta_config(tie_word_embeddings=False), tmp_path / "mlm")

    class MyMaskedLM(ForMaskedLM):
        pass

    untied = MyMaskedLM.from_pretrained(str(tmp_path / "mlm"), RobertaBaseModel)
    assert untied.config.head_config.tie_weights is False and not untied.tiesWeights()


def test_a_subclass_head_writes_its_parents_fields_into_the_export():
    model = MyTagger.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()), TokenClassificationHeadConfig(num_labels=4))
    assert model.toHuggingFace().config.num_labels == 4
    untied = ForMaskedLM.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()), MaskedLMHeadConfig(tie_weights=False))
    assert untied.toHuggingFace().config.tie_word_embeddings is False


def test_the_mean_pooling_head_has_no_equivalent():
    """``hf_equivalent_config`` is also what ``hfEquivalentSuffix`` checks."""
    assert SequenceClassificationHead.hf_equivalent_config == {"pooling": "first"}
    assert SequenceClassificationHead.hfEquivalentSuffix(SequenceClassificationHeadConfig(num_labels=2)) == "/"
    assert SequenceClassificationHead.hfEquivalentSuffix(
        SequenceClassificationHeadConfig(num_labels=2, pooling="first")) == "ForSequenceClassification"


def test_inspect_names_a_subclass_as_its_parent_and_a_checkpoint_by_its_problem_type():
    assert task_head(MyRegression) == task_head(ForSequenceRegression) == "sequence regression"
    assert task_head(MyTagger) == "token classification"

    class OwnTask(ForSequenceRegression):
        purpose = None

    assert task_head(OwnTask) == "OwnTask"
    config = {"architectures": ["RobertaForSequenceClassification"], "model_type": "roberta"}
    for problem, task in ((None, ForSingleLabelSequenceClassification),
                          ("single_label_classification", ForSingleLabelSequenceClassification),
                          ("multi_label_classification", ForMultiLabelSequenceClassification),
                          ("regression", ForSequenceRegression)):
        assert transformers_task(RobertaBaseModel, {**config, "problem_type": problem}) is task
        assert transformers_head(RobertaBaseModel, {**config, "problem_type": problem}) == "sequence classification"
    assert transformers_task(RobertaBaseModel, {"architectures": ["GPT2LMHeadModel"]}).__name__ == "ForCausalLM"
    assert transformers_head(RobertaBaseModel, {"architectures": ["RobertaForQuestionAnswering"]}) \
        == "extractive question answering"
    assert transformers_head(RobertaBaseModel, {"architectures": ["BertForNextSentencePrediction"]}) \
        == "next sentence prediction"
    assert transformers_task(RobertaBaseModel, {"architectures": ["RobertaModel"]}) is None
