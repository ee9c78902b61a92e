"""peft on archit's models as on transformers' own classes. For each task type (``TOKEN_CLS``, ``SEQ_CLS``,
``QUESTION_ANS``, ``FEATURE_EXTRACTION``, ``CAUSAL_LM``) and for LoRA without a task type: the same LoRA on the archit
model and on transformers' class of the same checkpoint (same initialisation, same seed) gives the same logits before
and after a few training steps through peft's forward (with transformers' keywords: ``labels``, QA's
``start_positions``/``end_positions``, ``return_dict``, ...); the adapter saved with peft's ``save_pretrained`` loads
onto a fresh archit model with ``PeftModel.from_pretrained`` and gives the trained logits; merged, the archit model saves
and reloads through archit. archit's head trains and saves with the adapter under ``modules_to_save=["head"]`` (a
``ModelWithHeads``'s under ``["heads.<name>"]``).

Which peft each nox session installs is ``archit/cli/releases.py``'s ``PEFT_LINES`` (0.13.2 up to transformers 4.42,
the newest from 4.43)."""
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import pytest
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model

from archit.instantiation.basemodels import GPT2BaseModel, RobertaBaseModel
from archit.instantiation.heads import SequenceClassificationHeadConfig, TokenClassificationHeadConfig
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import (
    ForCausalLM,
    ForExtractiveQA,
    ForSingleLabelSequenceClassification,
    ForSingleLabelTokenClassification,
)

from tests.helpers import gpt2_config, make_inputs, roberta_config, save_transformers_model

NUM_LABELS = 3
STEPS = 3


@dataclass(frozen=True)
class TaskType:
    """A peft task type, transformers' class and archit's model for it, what peft's forward gets as labels, and the
    name of the head each model trains (``modules_to_save``)."""
    name: Optional[str]  # peft's task_type (None: LoRA without one)
    transformers_class: str
    load_archit: Callable[[str], Any]
    make_config: Callable[..., transformers.PretrainedConfig]
    labels: Callable[[torch.Tensor, torch.Tensor], Dict[str, torch.Tensor]]
    transformers_head: Optional[str]
    archit_head: Optional[str]
    target_modules: List[str]
    fan_in_fan_out: bool = False  # GPT-2's Conv1D layers store their weights transposed.

    def __str__(self) -> str:
        return self.name or "no-task-type"


def _token_labels(input_ids, attention_mask):
    generator = torch.Generator().manual_seed(3)
    return {"labels": torch.randint(0, NUM_LABELS, input_ids.shape, generator=generator).masked_fill(
        attention_mask == 0, -100)}


def _sequence_labels(input_ids, attention_mask):
    return {"labels": torch.tensor([2, 0])}


def _spans(input_ids, attention_mask):
    return {"start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([3, 4])}


def _no_labels(input_ids, attention_mask):
    return {}


def _causal_labels(input_ids, attention_mask):
    return {"labels": input_ids.masked_fill(attention_mask == 0, -100)}


def _tagger(directory):
    return ForSingleLabelTokenClassification.from_pretrained(directory, RobertaBaseModel,
                                                             TokenClassificationHeadConfig(num_labels=NUM_LABELS))


ROBERTA_LORA = ["query", "value"]
TASK_TYPES = [
    TaskType("TOKEN_CLS", "RobertaForTokenClassification", _tagger, roberta_config, _token_labels, "classifier", "head",
             ROBERTA_LORA),
    TaskType("SEQ_CLS", "RobertaForSequenceClassification",
             lambda d: ForSingleLabelSequenceClassification.from_pretrained(
                 d, RobertaBaseModel, SequenceClassificationHeadConfig(num_labels=NUM_LABELS, pooling="first")),
             roberta_config, _sequence_labels, "classifier", "head", ROBERTA_LORA),
    TaskType("QUESTION_ANS", "RobertaForQuestionAnswering",
             lambda d: ForExtractiveQA.from_pretrained(d, RobertaBaseModel), roberta_config, _spans, "qa_outputs",
             "head", ROBERTA_LORA),
    # transformers' AutoModel is the body alone: archit's is a BaseModel.
    TaskType("FEATURE_EXTRACTION", "RobertaModel", lambda d: RobertaBaseModel.from_pretrained(d), roberta_config,
             _no_labels, None, None, ROBERTA_LORA),
    TaskType(None, "RobertaForTokenClassification", _tagger, roberta_config, _token_labels, "classifier", "head",
             ROBERTA_LORA),
]
# peft's PeftModelForCausalLM needs prepare_inputs_for_generation (generate is the subject of other tests).
CAUSAL_LM = TaskType("CAUSAL_LM", "GPT2LMHeadModel", lambda d: ForCausalLM.from_pretrained(d, GPT2BaseModel),
                     gpt2_config, _causal_labels, None, None, ["c_attn"], fan_in_fan_out=True)


def _lora(task_type: TaskType, head: Optional[str]) -> LoraConfig:
    """LoRA whose B matrices start random too (init_lora_weights=False), so that the adapter changes the logits from the
    first step: an adapter that is not applied, or applied twice, shows."""
    return LoraConfig(task_type=task_type.name, target_modules=task_type.target_modules, r=4, lora_alpha=8,
                      lora_dropout=0.0, init_lora_weights=False, modules_to_save=[head] if head else None,
                      fan_in_fan_out=task_type.fan_in_fan_out)


def _outputs(output: Any) -> torch.Tensor:
    """What a model computed: logits (QA: start and end; archit's B x L x 2), or the last hidden state."""
    if hasattr(output, "start_logits"):
        return torch.stack([output.start_logits, output.end_logits], dim=-1)
    if getattr(output, "logits", None) is not None:
        return output.logits
    return output.last_hidden_state


def _loss(output: Any) -> torch.Tensor:
    loss = getattr(output, "loss", None)
    return loss if loss is not None else output.last_hidden_state.pow(2).mean()  # Feature extraction: any loss.


def _train(model: Any, inputs: Dict[str, torch.Tensor]) -> None:
    """A few SGD steps in eval mode (no dropout: both libraries must compute the same function)."""
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(STEPS):
        optimiser.zero_grad()
        _loss(model(**inputs)).backward()
        optimiser.step()


def _run(model: Any, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return _outputs(model(**inputs))


def _generate(model: Any, input_ids: torch.Tensor) -> torch.Tensor:
    """Greedy continuations of unpadded prompts (the first 4 tokens of each input)."""
    prompts = input_ids[:, :4]
    with torch.no_grad():
        return model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=6,
                              do_sample=False, pad_token_id=0)


def _check_task_type(task_type: TaskType, tmp_path) -> None:
    cls = getattr(transformers, task_type.transformers_class)
    checkpoint = tmp_path / "checkpoint"
    config = task_type.make_config(**({"num_labels": NUM_LABELS} if task_type.labels in (
        _token_labels, _sequence_labels) else {}))
    reference = save_transformers_model(cls, config, checkpoint)
    archit = task_type.load_archit(str(checkpoint)).eval()
    input_ids, attention_mask = make_inputs()
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, **task_type.labels(input_ids, attention_mask)}
    torch.testing.assert_close(_run(archit, inputs), _run(reference, inputs))  # The same function before LoRA.

    torch.manual_seed(0)
    reference = get_peft_model(reference, _lora(task_type, task_type.transformers_head)).eval()
    torch.manual_seed(0)
    archit = get_peft_model(archit, _lora(task_type, task_type.archit_head)).eval()
    assert type(archit).__name__ == type(reference).__name__  # The same peft class (PeftModelForTokenClassification...)
    before = _run(archit, inputs)
    torch.testing.assert_close(before, _run(reference, inputs))

    _train(reference, inputs)
    _train(archit, inputs)
    trained = _run(archit, inputs)
    assert not torch.allclose(trained, before)
    torch.testing.assert_close(trained, _run(reference, inputs), atol=1e-5, rtol=1e-4)
    if task_type.archit_head:  # The head trained (modules_to_save), and is saved with the adapter.
        trainable = {name for name, p in archit.named_parameters() if p.requires_grad}
        assert any(f".{task_type.archit_head}.modules_to_save." in name for name in trainable), sorted(trainable)

    if task_type.name == "CAUSAL_LM":
        expected_tokens = _generate(reference, input_ids)
        assert torch.equal(_generate(archit, input_ids), expected_tokens)

    archit.save_pretrained(str(tmp_path / "adapter"))
    reloaded = PeftModel.from_pretrained(task_type.load_archit(str(checkpoint)), str(tmp_path / "adapter")).eval()
    assert type(reloaded) is type(archit)
    torch.testing.assert_close(_run(reloaded, inputs), trained)
    if task_type.name == "CAUSAL_LM":
        assert torch.equal(_generate(reloaded, input_ids), expected_tokens)

    merged = reloaded.merge_and_unload()
    assert type(merged) is type(task_type.load_archit(str(checkpoint)))
    torch.testing.assert_close(_run(merged, inputs), trained, atol=1e-5, rtol=1e-4)
    merged.save_pretrained(str(tmp_path / "merged"))
    torch.testing.assert_close(_run(task_type.load_archit(str(tmp_path / "merged")).eval(), inputs),
                               _run(merged, inputs))


@pytest.mark.parametrize("task_type", TASK_TYPES, ids=str)
def test_task_type_trains_saves_and_reloads_as_on_transformers(task_type, tmp_path):
    _check_task_type(task_type, tmp_path)


def test_causal_lm_task_type_trains_saves_reloads_and_generates_as_on_transformers(tmp_path):
    """Training, saving and reloading, and greedy generation through peft's PeftModelForCausalLM (its generate calls
    the model's prepare_inputs_for_generation and generate) giving transformers' tokens after training and reload."""
    _check_task_type(CAUSAL_LM, tmp_path)


def test_token_classification_the_reported_way(tmp_path):
    """The issue's report: peft's TOKEN_CLS model called as the Trainer calls it, with labels, on a RoBERTa tagger
    (was ``TypeError: RobertaModel(...) got multiple values for keyword argument 'return_dict'``)."""
    save_transformers_model(transformers.RobertaModel, roberta_config(), tmp_path)
    model = get_peft_model(_tagger(str(tmp_path)), LoraConfig(task_type="TOKEN_CLS", target_modules=ROBERTA_LORA,
                                                             modules_to_save=["head"]))
    input_ids, attention_mask = make_inputs()
    output = model(input_ids=input_ids, attention_mask=attention_mask, **_token_labels(input_ids, attention_mask))
    output.loss.backward()
    assert output.logits.shape == (*input_ids.shape, NUM_LABELS)
    assert model.base_model.model.head.modules_to_save["default"].dense.weight.grad is not None


def test_several_heads_with_lora_and_their_heads_saved(tmp_path):
    """A ModelWithHeads: LoRA on the body, one head trained and saved with the adapter (``heads.<name>``), the other
    left as it was; reloaded onto a fresh model, the logits of both heads are the trained model's."""
    save_transformers_model(transformers.RobertaModel, roberta_config(), tmp_path / "body")

    def fresh():
        torch.manual_seed(1)  # The same new heads each time.
        return ModelWithHeads.from_pretrained(str(tmp_path / "body"), RobertaBaseModel, heads={
            "ner": (ForSingleLabelTokenClassification, TokenClassificationHeadConfig(num_labels=NUM_LABELS)),
            "sentiment": (ForSingleLabelSequenceClassification, SequenceClassificationHeadConfig(num_labels=2))})

    model = fresh()
    frozen_head = {k: v.clone() for k, v in model.heads["sentiment"].state_dict().items()}
    model = get_peft_model(model, LoraConfig(target_modules=ROBERTA_LORA, r=4, init_lora_weights=False,
                                             modules_to_save=["heads.ner"])).eval()
    input_ids, attention_mask = make_inputs()
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
              "labels": {"ner": _token_labels(input_ids, attention_mask)["labels"]}}
    with torch.no_grad():
        before = model(**inputs).logits
    _train(model, inputs)
    with torch.no_grad():
        trained = model(**inputs).logits
    assert not torch.allclose(trained["ner"], before["ner"])
    for key, value in model.base_model.model.heads["sentiment"].state_dict().items():
        assert torch.equal(value, frozen_head[key]), key

    model.save_pretrained(str(tmp_path / "adapter"))
    reloaded = PeftModel.from_pretrained(fresh(), str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        again = reloaded(**inputs).logits
    for name in ("ner", "sentiment"):
        torch.testing.assert_close(again[name], trained[name])

