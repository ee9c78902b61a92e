"""Every task of ``archit.instantiation.tasks`` (the list is read from the module, so a new task without an entry here
fails), on an encoder (``RobertaBaseModel``) and on a decoder through ``AutoBaseModel`` (Llama): builds, runs forward
and backward with finite gradients reaching base and head, saves and reloads with the same logits, and either exports
to transformers or says it cannot."""
from typing import Callable, Dict, NamedTuple

import pytest
import torch
import transformers

import archit.instantiation.heads as heads
from archit.instantiation import tasks
from archit.instantiation.basemodels import AutoBaseModel, RobertaBaseModel

from tests.helpers import (
    VOCAB,
    assert_same_outputs,
    llama_config,
    load_archit,
    perturb_,
    roberta_config,
)

B, L, CHOICES, WORDS, SUBWORDS = 2, 6, 3, 4, 2


class TaskCase(NamedTuple):
    head_config: Callable[[], object]
    inputs: Callable[[int], Dict[str, torch.Tensor]]   # pad id -> forward arguments
    labels: Callable[[torch.Generator], object]


def _ids(generator, *shape):
    return torch.randint(3, VOCAB - 1, shape, generator=generator)


def _flat(pad: int) -> Dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, -1] = 0
    return {"input_ids": _ids(generator, B, L).masked_fill(mask == 0, pad), "attention_mask": mask}


def _nested(pad: int) -> Dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"input_ids": _ids(generator, B, CHOICES, L), "attention_mask": torch.ones(B, CHOICES, L, dtype=torch.long)}


def _words(pad: int) -> Dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = _ids(generator, B, WORDS, SUBWORDS)
    ids[:, :, 1][torch.rand(B, WORDS, generator=generator) < 0.5] = pad  # one-subword words
    ids[1, -1] = pad                                                         # a padding word
    return {"input_ids": ids, "attention_mask": ids[:, :, 0].ne(pad).long()}


def _heads():
    return heads


def _token_labels(generator, classes=3):
    labels = torch.randint(0, classes, (B, L), generator=generator)
    labels[1, -1] = -100
    return labels


CASES: Dict[str, TaskCase] = {
    "ForSingleLabelTokenClassification": TaskCase(lambda: _heads().TokenClassificationHeadConfig(num_labels=3), _flat,
                                                  _token_labels),
    "ForSingleLabelSequenceClassification": TaskCase(
        lambda: _heads().SequenceClassificationHeadConfig(num_labels=3), _flat,
        lambda g: torch.randint(0, 3, (B,), generator=g)),
    "ForMultiLabelSequenceClassification": TaskCase(
        lambda: _heads().SequenceClassificationHeadConfig(num_labels=3, pooling="first"), _flat,
        lambda g: torch.randint(0, 2, (B, 3), generator=g).float()),
    "ForSequenceRegression": TaskCase(lambda: _heads().SequenceClassificationHeadConfig(num_labels=1), _flat,
                                      lambda g: torch.randn(B, generator=g)),
    "ForExtractiveQA": TaskCase(lambda: _heads().ExtractiveQAHeadConfig(), _flat,
                                lambda g: torch.tensor([[1, 3], [0, 2]])),
    "ForExtractiveAQA": TaskCase(lambda: _heads().ExtractiveAQAHeadConfig(ua_loss_weight=0.5), _flat,
                                 lambda g: (torch.tensor([[1, 3], [0, 0]]), torch.tensor([1, 0]))),
    "ForSingleAnswerMultipleChoice": TaskCase(lambda: _heads().SequenceClassificationHeadConfig(num_labels=1), _nested,
                                              lambda g: torch.tensor([2, 0])),
    "ForMaskedLM": TaskCase(lambda: _heads().MaskedLMHeadConfig(), _flat, lambda g: _token_labels(g, VOCAB)),
    "ForCausalLM": TaskCase(lambda: _heads().CausalLMHeadConfig(), _flat, lambda g: _token_labels(g, VOCAB)),
    "ForDependencyParsing": TaskCase(
        lambda: _heads().DependencyParsingHeadConfig(num_labels=5, final_hidden_size_arcs=16,
                                                     final_hidden_size_relations=8),
        _words, lambda g: (torch.tensor([[0, 0, 1, 1], [0, 2, 0, -100]]), torch.tensor([[1, 2, 3, 4], [0, 1, 2, -100]]))),
}


def test_every_task_has_a_case():
    assert set(CASES) == set(tasks.TASKS)


def _roberta():
    return RobertaBaseModel, roberta_config()


def _llama():
    return AutoBaseModel, llama_config()


BASES = {"roberta": _roberta, "llama-auto": _llama}


def _logits(output):
    return output.logits if isinstance(output.logits, tuple) else (output.logits,)


@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.parametrize("task_name", sorted(CASES))
def test_task_trains_saves_reloads_and_exports_or_refuses(task_name, base, tmp_path):
    case = CASES[task_name]
    task = getattr(tasks, task_name)
    base_class, config = BASES[base]()
    torch.manual_seed(0)
    model = task.fromModelAndHeadConfig(base_class(config), case.head_config())
    perturb_(model).train()  # The parser's biaffine weights start at zero, which stops gradients at the first step.
    inputs = case.inputs(config.pad_token_id)
    output = model(**inputs, labels=case.labels(torch.Generator().manual_seed(1)))
    assert output.loss is not None and torch.isfinite(output.loss)
    output.loss.backward()
    head_grads = [p.grad for p in model.head.parameters() if p.requires_grad]
    assert head_grads and all(g is not None and torch.isfinite(g).all() for g in head_grads)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.base_model.parameters())

    model.eval()
    model.save_pretrained(str(tmp_path))
    reloaded = load_archit(task, tmp_path, base_class=base_class)
    assert type(reloaded.model) is base_class and reloaded.config.head_config == model.config.head_config
    with torch.no_grad():
        assert_same_outputs(_logits(reloaded(**inputs)), _logits(model(**inputs)))

    try:
        exported = model.toHuggingFace()
    except NotImplementedError as error:
        assert "equivalent" in str(error)
    else:
        assert isinstance(exported, transformers.PreTrainedModel)
