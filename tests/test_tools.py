"""An archit model is a transformers model to the tools that call it. Every forward keyword of transformers' task models
gives what transformers' own class gives on the same weights: ``output_hidden_states``, ``output_attentions`` (eager
attention), ``inputs_embeds``, ``position_ids``, ``token_type_ids``, ``return_dict=False`` (the tuple, element by
element), transformers' label keywords (``start_positions``/``end_positions``) and no ``attention_mask``, for token and
sequence classification, masked and causal LMs and extractive QA on RoBERTa, BERT, GPT-2 and Llama, and for
``ModelWithHeads``. Then ``torch.compile`` (forward and backward) and what tools pass to ``from_pretrained``
(``device_map``, ``dtype``, ``low_cpu_mem_usage``, the default attention implementation).

The reference is the transformers model that wrote the checkpoint (eager attention, float32, eval mode); the archit
model loads that checkpoint, its head imported from transformers' head.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import pytest
import torch
import transformers
from packaging.version import Version

from archit.instantiation.basemodels import AutoBaseModel, BertBaseModel, GPT2BaseModel, RobertaBaseModel
from archit.instantiation.heads import ExtractiveQAHeadConfig, TokenClassificationHeadConfig
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import (
    ForCausalLM,
    ForExtractiveAQA,
    ForExtractiveQA,
    ForMaskedLM,
    ForSingleLabelSequenceClassification,
    ForSingleLabelTokenClassification,
)

from tests.helpers import (
    BATCH,
    SEQ_LEN,
    TRANSFORMERS_VERSION,
    assert_close,
    bert_config,
    gpt2_config,
    llama_config,
    load_archit,
    make_inputs,
    roberta_config,
    save_transformers_model,
)

NUM_LABELS = 3

FAMILIES = {  # family: (archit base class, tiny config)
    "roberta": (RobertaBaseModel, roberta_config),
    "bert": (BertBaseModel, bert_config),
    "gpt2": (GPT2BaseModel, gpt2_config),
    "llama": (AutoBaseModel, llama_config),
}


@dataclass(frozen=True)
class Case:
    """One archit task on one family, and transformers' class computing the same."""
    family: str
    task: type
    transformers_class: str  # A name in transformers.
    head_copied_from: Optional[str] = None  # Load the body alone, copy this module of transformers' model as the head.

    @property
    def id(self) -> str:
        return f"{self.family}-{self.task.__name__}"

    def make_config(self, **overrides) -> transformers.PretrainedConfig:
        """The family's tiny config; classifiers with NUM_LABELS (transformers' QA heads have num_labels outputs:
        those keep the default 2)."""
        labels = {"num_labels": NUM_LABELS} if self.task in (ForSingleLabelTokenClassification,
                                                            ForSingleLabelSequenceClassification) else {}
        return FAMILIES[self.family][1](**labels, **overrides)


CASES = [
    Case("roberta", ForSingleLabelTokenClassification, "RobertaForTokenClassification"),
    Case("bert", ForSingleLabelTokenClassification, "BertForTokenClassification"),
    Case("gpt2", ForSingleLabelTokenClassification, "GPT2ForTokenClassification"),
    Case("llama", ForSingleLabelTokenClassification, "LlamaForTokenClassification"),
    Case("roberta", ForSingleLabelSequenceClassification, "RobertaForSequenceClassification"),
    Case("roberta", ForMaskedLM, "RobertaForMaskedLM"),
    Case("bert", ForMaskedLM, "BertForMaskedLM"),
    Case("gpt2", ForCausalLM, "GPT2LMHeadModel"),
    Case("llama", ForCausalLM, "LlamaForCausalLM"),
    Case("roberta", ForExtractiveQA, "RobertaForQuestionAnswering"),
    Case("bert", ForExtractiveQA, "BertForQuestionAnswering"),
    Case("gpt2", ForExtractiveQA, "GPT2ForQuestionAnswering"),
    # transformers' LlamaForQuestionAnswering keeps its body under "transformer." (its base_model_prefix), not under
    # LlamaModel's "model.", and archit's loader reads task checkpoints with the core's prefix: it refuses this one
    # (a loading matter, not a forward one). The body is loaded from its own checkpoint, the head copied.
    Case("llama", ForExtractiveQA, "LlamaForQuestionAnswering", "qa_outputs"),
]
ENCODER_CASES = [case for case in CASES if case.family in ("roberta", "bert")]  # Those with token type embeddings.


@dataclass
class Pair:
    """An archit model and the transformers model whose checkpoint it loaded."""
    case: Case
    archit: Any
    reference: Any
    directory: Path


_PAIRS: Dict[str, Pair] = {}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Callable[[Case], Pair]:
    """Builds each case's pair once for this module (read-only for the tests: they run both models in eval mode)."""
    def get(case: Case) -> Pair:
        cls = getattr(transformers, case.transformers_class, None)
        if cls is None:
            pytest.skip(f"transformers {TRANSFORMERS_VERSION} has no {case.transformers_class}")
        if case.id not in _PAIRS:
            directory = tmp_path_factory.mktemp(case.id)
            reference = save_transformers_model(cls, case.make_config(), directory)
            archit = load_pair_model(case, reference, directory)
            _PAIRS[case.id] = Pair(case, archit, reference, directory)
        return _PAIRS[case.id]
    yield get
    _PAIRS.clear()


def load_pair_model(case: Case, reference: Any, directory: Path) -> Any:
    """The archit model of ``reference``'s checkpoint in ``directory``: without a head config, which is read from the
    transformers checkpoint, whose head is imported (or, for ``head_copied_from``, the body alone and a copied head)."""
    base_class = FAMILIES[case.family][0]
    if case.head_copied_from is None:
        return load_archit(case.task, directory, base_class=base_class)
    body = directory / "body"
    reference.base_model.save_pretrained(str(body))
    model = load_archit(case.task, body, base_class=base_class, head_config=case.task.headClass().configClass()())
    model.head.dense.load_state_dict(getattr(reference, case.head_copied_from).state_dict())
    return model


def logits_of(output: Any, task: type) -> torch.Tensor:
    """The logits of an output of either library, as archit gives them (extractive QA: B x L x 2)."""
    if isinstance(output, tuple):
        raise TypeError("logits_of takes a model output, not a tuple")
    if task is ForExtractiveQA and hasattr(output, "start_logits"):
        return torch.stack([output.start_logits, output.end_logits], dim=-1)
    return output.logits


def labels_for(task: type, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Labels as transformers' task model takes them (keyword arguments): the same are passed to archit's."""
    generator = torch.Generator().manual_seed(5)
    if task is ForSingleLabelTokenClassification:
        return {"labels": torch.randint(0, NUM_LABELS, input_ids.shape, generator=generator).masked_fill(
            attention_mask == 0, -100)}
    if task is ForSingleLabelSequenceClassification:
        return {"labels": torch.randint(0, NUM_LABELS, (input_ids.shape[0],), generator=generator)}
    if task is ForMaskedLM:
        labels = torch.full_like(input_ids, -100)
        labels[0, 2], labels[1, 4] = 7, 11
        return {"labels": labels}
    if task is ForCausalLM:
        return {"labels": input_ids.masked_fill(attention_mask == 0, -100)}
    if task is ForExtractiveQA:
        return {"start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([3, 4])}
    raise AssertionError(task)


def no_cache(case: Case) -> Dict[str, bool]:
    """transformers' causal LMs keep a key-value cache by default; archit's keep one only when asked. The tuple
    comparisons ask neither for one."""
    return {"use_cache": False} if case.task is ForCausalLM else {}


def assert_same_nested(actual: Any, expected: Any, path: str = "output") -> None:
    """Tuples (of tuples) of tensors equal element by element, with the same lengths."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), f"{path}: {type(actual).__name__} where transformers has a tensor"
        assert_close(actual, expected)
        return
    assert isinstance(actual, (tuple, list)) and isinstance(expected, (tuple, list)), path
    assert len(actual) == len(expected), f"{path}: {len(actual)} elements, transformers' has {len(expected)}"
    for index, (a, e) in enumerate(zip(actual, expected)):
        assert_same_nested(a, e, f"{path}[{index}]")


def other_positions(family: str) -> torch.Tensor:
    """Positions in reverse order: RoBERTa's past its padding index (1), the others' below the sequence length (4.36's
    Llama computes its rotary table for the sequence length only)."""
    return (torch.arange(SEQ_LEN).flip(0) + (2 if family == "roberta" else 0)).expand(BATCH, -1)


def run_both(pair: Pair, **kwargs):
    with torch.no_grad():
        return pair.archit(**kwargs), pair.reference(**kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Forward keywords, against transformers' own class.

@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_output_hidden_states_equal_transformers(case, pairs):
    pair = pairs(case)
    input_ids, attention_mask = make_inputs()
    actual, expected = run_both(pair, input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    assert_close(logits_of(actual, case.task), logits_of(expected, case.task))
    assert_same_nested(actual.hidden_states, expected.hidden_states, "hidden_states")
    assert actual.attentions is None and expected.attentions is None


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_output_attentions_equal_transformers(case, pairs):
    pair = pairs(case)
    input_ids, attention_mask = make_inputs()
    actual, expected = run_both(pair, input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
    assert len(expected.attentions) == pair.reference.config.num_hidden_layers
    assert_same_nested(actual.attentions, expected.attentions, "attentions")
    assert actual.hidden_states is None


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_inputs_embeds_equal_transformers(case, pairs):
    pair = pairs(case)
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        embeds = pair.reference.get_input_embeddings()(input_ids) * 1.5  # Not the ids' own embeddings.
    actual, expected = run_both(pair, inputs_embeds=embeds, attention_mask=attention_mask, output_hidden_states=True)
    assert_close(logits_of(actual, case.task), logits_of(expected, case.task))
    assert_same_nested(actual.hidden_states, expected.hidden_states, "hidden_states")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_position_ids_equal_transformers(case, pairs):
    """Other positions than the default, through every layer (hidden states compared too)."""
    pair = pairs(case)
    input_ids, attention_mask = make_inputs()
    assert_keyword_matters_and_equals_transformers(case, pair, input_ids, attention_mask,
                                                   position_ids=other_positions(case.family))


def assert_keyword_matters_and_equals_transformers(case, pair, input_ids, attention_mask, **keyword) -> None:
    """With ``keyword``, archit's logits differ from its logits without it (the keyword reached the body) and equal
    transformers', and so do the hidden states of every layer."""
    actual, expected = run_both(pair, input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                                **keyword)
    with torch.no_grad():
        default = pair.archit(input_ids=input_ids, attention_mask=attention_mask)
    assert not torch.allclose(logits_of(actual, case.task), logits_of(default, case.task))  # The keyword mattered.
    assert_close(logits_of(actual, case.task), logits_of(expected, case.task))
    assert_same_nested(actual.hidden_states, expected.hidden_states, "hidden_states")


@pytest.mark.parametrize("case", ENCODER_CASES, ids=lambda case: case.id)
def test_token_type_ids_equal_transformers(case, pairs):
    pair = pairs(case)
    input_ids, attention_mask = make_inputs()
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, SEQ_LEN // 2:] = 1
    assert_keyword_matters_and_equals_transformers(case, pair, input_ids, attention_mask, token_type_ids=token_type_ids)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_without_attention_mask_equals_transformers(case, pairs):
    pair = pairs(case)
    input_ids, _ = make_inputs()
    actual, expected = run_both(pair, input_ids=input_ids)
    assert_close(logits_of(actual, case.task), logits_of(expected, case.task))
    with torch.no_grad():  # And the same as a mask of ones.
        assert_close(logits_of(pair.archit(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)), case.task),
                     logits_of(actual, case.task))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_return_dict_false_is_transformers_tuple(case, pairs):
    """Loss (from transformers' label keywords: ``labels``, or extractive QA's ``start_positions``/``end_positions``),
    logits (QA: start and end apart), hidden states, attentions: the same elements in the same order."""
    pair = pairs(case)
    input_ids, attention_mask = make_inputs()
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, output_attentions=True,
                  return_dict=False, **labels_for(case.task, input_ids, attention_mask), **no_cache(case))
    actual, expected = run_both(pair, **kwargs)
    assert isinstance(actual, tuple)
    assert_same_nested(actual, expected)
    without_extras = {k: v for k, v in kwargs.items() if k not in ("output_hidden_states", "output_attentions")}
    actual, expected = run_both(pair, **without_extras)
    assert_same_nested(actual, expected)


@pytest.mark.parametrize("case", [case for case in CASES if case.task is ForExtractiveQA], ids=lambda case: case.id)
def test_question_answering_takes_start_and_end_positions(case, pairs):
    """As transformers' XForQuestionAnswering: the loss of start_positions/end_positions is the loss of labels B x 2."""
    pair = pairs(case)
    input_ids, attention_mask = make_inputs()
    positions = labels_for(ForExtractiveQA, input_ids, attention_mask)
    actual, expected = run_both(pair, input_ids=input_ids, attention_mask=attention_mask, **positions)
    assert_close(actual.loss, expected.loss)
    with torch.no_grad():
        as_labels = pair.archit(input_ids=input_ids, attention_mask=attention_mask,
                                labels=torch.stack([positions["start_positions"], positions["end_positions"]], -1))
    assert_close(actual.loss, as_labels.loss)
    with torch.no_grad():  # Collators give B x 1 too, as transformers' squeeze accepts.
        column = pair.archit(input_ids=input_ids, attention_mask=attention_mask,
                             **{k: v.unsqueeze(-1) for k, v in positions.items()})
    assert_close(column.loss, expected.loss)
    with pytest.raises(ValueError, match="end_positions"):
        pair.archit(input_ids=input_ids, attention_mask=attention_mask, start_positions=positions["start_positions"])
    with pytest.raises(ValueError, match="labels= and start_positions="):
        pair.archit(input_ids=input_ids, attention_mask=attention_mask, labels=as_labels.logits, **positions)
    with torch.no_grad():  # None, as peft passes them without labels, means no labels.
        assert pair.archit(input_ids=input_ids, attention_mask=attention_mask, start_positions=None,
                           end_positions=None).loss is None


def test_answerability_qa_takes_start_and_end_positions(tmp_path):
    """ForExtractiveAQA: start_positions/end_positions are its QA labels without answerability labels."""
    base = RobertaBaseModel(roberta_config())
    model = ForExtractiveAQA.fromModelAndHeadConfig(base, ForExtractiveAQA.headClass().configClass()()).eval()
    input_ids, attention_mask = make_inputs()
    start, end = torch.tensor([1, 2]), torch.tensor([3, 4])
    with torch.no_grad():
        by_keywords = model(input_ids=input_ids, attention_mask=attention_mask, start_positions=start,
                            end_positions=end)
        by_labels = model(input_ids=input_ids, attention_mask=attention_mask, labels=(torch.stack([start, end], -1),
                                                                                      None))
    assert_close(by_keywords.loss, by_labels.loss)


# ---------------------------------------------------------------------------------------------------------------------
# ModelWithHeads: the same keywords, one body for several heads.

@pytest.fixture(scope="module")
def several_heads(tmp_path_factory):
    """A RoBERTa token classifier of transformers, and a ModelWithHeads with its head (``ner``, imported from its
    checkpoint) and a new QA head."""
    directory = tmp_path_factory.mktemp("several-heads")
    reference = save_transformers_model(transformers.RobertaForTokenClassification,
                                        roberta_config(num_labels=NUM_LABELS), directory)
    model = ModelWithHeads.from_pretrained(str(directory), RobertaBaseModel, heads={
        "qa": (ForExtractiveQA, ExtractiveQAHeadConfig())}, attn_implementation="eager")
    model.addHead("ner", ForSingleLabelTokenClassification, checkpoint=str(directory), attn_implementation="eager")
    return model.eval(), reference


def test_several_heads_hidden_states_and_attentions_equal_transformers(several_heads):
    model, reference = several_heads
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        actual = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                       output_attentions=True)
        expected = reference(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                             output_attentions=True)
    assert_close(actual.logits["ner"], expected.logits)
    assert_same_nested(actual.hidden_states, expected.hidden_states, "hidden_states")
    assert_same_nested(actual.attentions, expected.attentions, "attentions")


@pytest.mark.parametrize("keywords", ["inputs_embeds", "position_ids", "token_type_ids", "no_attention_mask"])
def test_several_heads_forward_keywords_equal_transformers(several_heads, keywords):
    model, reference = several_heads
    input_ids, attention_mask = make_inputs()
    kwargs: Dict[str, Optional[torch.Tensor]] = {"input_ids": input_ids, "attention_mask": attention_mask}
    if keywords == "inputs_embeds":
        with torch.no_grad():
            kwargs["inputs_embeds"] = reference.get_input_embeddings()(kwargs.pop("input_ids")) * 1.5
    elif keywords == "position_ids":
        kwargs["position_ids"] = other_positions("roberta")
    elif keywords == "token_type_ids":
        kwargs["token_type_ids"] = (torch.arange(SEQ_LEN) >= SEQ_LEN // 2).long().expand(BATCH, -1)
    else:
        del kwargs["attention_mask"]
    with torch.no_grad():
        actual = model(**kwargs, output_hidden_states=True)
        expected = reference(**kwargs, output_hidden_states=True)
    assert_close(actual.logits["ner"], expected.logits)
    assert actual.logits["qa"].shape == (BATCH, SEQ_LEN, 2)
    assert_same_nested(actual.hidden_states, expected.hidden_states, "hidden_states")


def test_several_heads_return_dict_false(several_heads):
    """A tuple of the output's fields that are set, in order: loss, logits by head, losses by head, then hidden states
    and attentions equal to transformers'."""
    model, reference = several_heads
    input_ids, attention_mask = make_inputs()
    labels = labels_for(ForSingleLabelTokenClassification, input_ids, attention_mask)["labels"]
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        as_tuple = model(**kwargs, labels={"ner": labels}, return_dict=False)
        as_output = model(**kwargs, labels={"ner": labels})
        expected = reference(**kwargs, labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert len(as_tuple) == len(as_output.to_tuple())
    loss, logits, losses = as_tuple[:3]
    assert_close(loss, expected[0])
    assert_close(losses["ner"], expected[0])
    assert_close(logits["ner"], expected[1])
    hidden_states, attentions = as_tuple[-2:]
    assert_same_nested(hidden_states, expected[2], "hidden_states")
    assert_same_nested(attentions, expected[3], "attentions")


# ---------------------------------------------------------------------------------------------------------------------
# torch.compile

COMPILE_CASES = [CASES[0], CASES[8]]  # RoBERTa token classification, Llama causal LM


def _compiled(model, backend: str, fullgraph: bool):
    torch.compiler.reset()
    return torch.compile(model, backend=backend, fullgraph=fullgraph)


# torch 2.13 warns that an autograd Function is instantiated while dynamo traces transformers 4.5x's masking_utils
# (vmap over mask functions): transformers' own classes compile with the warning as archit's do.
@pytest.mark.filterwarnings(
    "ignore:<class 'torch.autograd.function.Function'> should not be instantiated:DeprecationWarning")
@pytest.mark.parametrize("fullgraph", [False, True], ids=["graph-breaks-allowed", "fullgraph"])
@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("case", COMPILE_CASES, ids=lambda case: case.id)
def test_torch_compile_forward_and_backward(case, backend, fullgraph, tmp_path):
    """A compiled archit model computes the logits, loss and gradients of the uncompiled one. ``fullgraph=True``
    wherever transformers' own class compiles without graph breaks on this release."""
    cls = getattr(transformers, case.transformers_class)
    reference = save_transformers_model(cls, case.make_config(), tmp_path)
    input_ids, attention_mask = make_inputs()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask,
                  **labels_for(case.task, input_ids, attention_mask))
    if fullgraph:
        try:
            _compiled(reference, backend, fullgraph=True)(**inputs, **no_cache(case))
        except Exception as error:  # What dynamo raises varies by release; the point is transformers' own failure.
            pytest.skip(f"transformers' own {case.transformers_class} does not compile with fullgraph=True on "
                        f"{TRANSFORMERS_VERSION}: {type(error).__name__}")
    model = load_pair_model(case, reference, tmp_path)
    eager = model(**inputs)
    eager.loss.backward()
    eager_gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    compiled = _compiled(model, backend, fullgraph)(**inputs)
    compiled.loss.backward()
    assert_close(compiled.logits, eager.logits.detach())
    assert_close(compiled.loss, eager.loss.detach())
    gradients = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert set(gradients) == set(eager_gradients)
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, eager_gradients[name], atol=1e-5, rtol=1e-4, msg=name)
    torch.compiler.reset()


# ---------------------------------------------------------------------------------------------------------------------
# What tools pass to from_pretrained.

DTYPE_KEYWORD = "dtype" if TRANSFORMERS_VERSION >= Version("4.56.0.dev0") else "torch_dtype"  # transformers' name.


@pytest.fixture(scope="module")
def token_classifier(tmp_path_factory):
    """A RoBERTa token classifier checkpoint of transformers, whose config asks for no attention implementation."""
    directory = tmp_path_factory.mktemp("token-classifier")
    save_transformers_model(transformers.RobertaForTokenClassification,
                            roberta_config(num_labels=NUM_LABELS, attn_implementation=None), directory)
    return directory


def _tagger(directory, **kwargs):
    return ForSingleLabelTokenClassification.from_pretrained(
        str(directory), RobertaBaseModel, TokenClassificationHeadConfig(num_labels=NUM_LABELS), **kwargs).eval()


def _logits(model) -> torch.Tensor:
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def test_default_attention_is_transformers_choice(token_classifier):
    """Without attn_implementation, the body runs what transformers' own class picks on this release (and the model's
    config says so)."""
    reference = transformers.AutoModelForTokenClassification.from_pretrained(str(token_classifier)).eval()
    model = _tagger(token_classifier)
    chosen = reference.config._attn_implementation
    assert model.base_model.config._attn_implementation == chosen
    assert model.config._attn_implementation == chosen
    assert_close(_logits(model), _logits(reference))


@pytest.mark.parametrize("device_map", ["auto", "cpu", {"": "cpu"}], ids=["auto", "cpu", "dict"])
def test_device_map(token_classifier, device_map):
    reference = transformers.AutoModelForTokenClassification.from_pretrained(str(token_classifier),
                                                                             device_map=device_map).eval()
    model = _tagger(token_classifier, device_map=device_map)
    devices = {p.device for p in model.parameters()}
    assert devices == {p.device for p in reference.parameters()}
    assert_close(_logits(model).cpu(), _logits(reference).cpu())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_dtype_equals_transformers(token_classifier, dtype):
    reference = transformers.AutoModelForTokenClassification.from_pretrained(str(token_classifier),
                                                                             **{DTYPE_KEYWORD: dtype}).eval()
    for keyword in ("dtype", "torch_dtype"):  # archit takes both names on every release.
        model = _tagger(token_classifier, **{keyword: dtype})
        assert {p.dtype for p in model.parameters()} == {dtype}
        torch.testing.assert_close(_logits(model), _logits(reference))


@pytest.mark.parametrize("low_cpu_mem_usage", [True, False])
def test_low_cpu_mem_usage(token_classifier, low_cpu_mem_usage):
    """Accepted as transformers accepts it; archit always loads without a second copy, so the weights are the same."""
    default = _tagger(token_classifier)
    model = _tagger(token_classifier, low_cpu_mem_usage=low_cpu_mem_usage)
    for (name, tensor), (_, expected) in zip(model.state_dict().items(), default.state_dict().items()):
        assert torch.equal(tensor, expected), name
    assert_close(_logits(model), _logits(default))
