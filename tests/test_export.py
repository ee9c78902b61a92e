"""``ModelWithHead.toHuggingFace``: the transformers task class that computes the same function, holding the same
weights. Checked against transformers itself: the exported object is transformers' class named independently here, its
tensors are archit's, its logits equal archit's (atol 1e-4), and its ``save_pretrained`` folder loads in plain
transformers with the same logits. Where no transformers class is equivalent, a clear error."""
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
import transformers

import archit.instantiation.heads as heads
import archit.instantiation.tasks as tasks
from archit.instantiation.basemodels import AutoBaseModel
from archit.instantiation.heads import (
    CausalLMHeadConfig,
    ExtractiveQAHeadConfig,
    MaskedLMHeadConfig,
    SequenceClassificationHeadConfig,
    TokenClassificationHeadConfig,
)
from archit.instantiation.tasks import (
    ForCausalLM,
    ForMaskedLM,
    ForMultiLabelSequenceClassification,
    ForSequenceRegression,
    ForSingleLabelSequenceClassification,
    ForSingleLabelTokenClassification,
)

from tests.helpers import (
    ARCHS,
    build_transformers_model,
    make_inputs,
    perturb_,
    read_checkpoint_tensors,
    save_transformers_model,
)
from tests.test_basemodels import FAMILIES

EXPORT_ATOL = 1e-4


@dataclass(frozen=True)
class Case:
    arch: str
    task: str          # in archit.instantiation.tasks
    head_config: Callable
    expected: str      # the transformers class, by name

    @property
    def id(self) -> str:
        return f"{self.arch}-{self.expected}"


def _heads():
    return heads


CASES = [
    *(Case(a, "ForSingleLabelTokenClassification", lambda: _heads().TokenClassificationHeadConfig(num_labels=3),
           f"{prefix}ForTokenClassification") for a, prefix in (("roberta", "Roberta"), ("bert", "Bert"), ("gpt2", "GPT2"))),
    *(Case(a, "ForExtractiveQA", lambda: _heads().ExtractiveQAHeadConfig(), f"{prefix}ForQuestionAnswering")
      for a, prefix in (("roberta", "Roberta"), ("bert", "Bert"), ("gpt2", "GPT2"))),
    Case("roberta", "ForMaskedLM", lambda: _heads().MaskedLMHeadConfig(), "RobertaForMaskedLM"),
    Case("roberta", "ForMaskedLM", lambda: _heads().MaskedLMHeadConfig(tie_weights=False), "RobertaForMaskedLM"),
    Case("bert", "ForMaskedLM", lambda: _heads().MaskedLMHeadConfig(), "BertForMaskedLM"),
    Case("gpt2", "ForCausalLM", lambda: _heads().CausalLMHeadConfig(), "GPT2LMHeadModel"),
    Case("gpt2", "ForCausalLM", lambda: _heads().CausalLMHeadConfig(tie_weights=False), "GPT2LMHeadModel"),
    Case("roberta", "ForSingleLabelSequenceClassification",
         lambda: _heads().SequenceClassificationHeadConfig(num_labels=3, pooling="first"),
         "RobertaForSequenceClassification"),
]


def build_archit(case: Case):
    arch = ARCHS[case.arch]
    torch.manual_seed(0)
    model = getattr(tasks, case.task).fromModelAndHeadConfig(arch.base_class(arch.make_config()), case.head_config())
    return perturb_(model).eval()


def logits_of(output) -> torch.Tensor:
    if getattr(output, "start_logits", None) is not None:
        return torch.stack([output.start_logits, output.end_logits], dim=-1)
    return output.logits


def assert_saved_tensors_are_the_models(model, directory) -> None:
    """What save_pretrained wrote is the exported model's weights (read with safetensors, not with transformers)."""
    saved = read_checkpoint_tensors(directory)
    state = model.state_dict()
    assert saved and set(saved) <= set(state)
    for key, tensor in saved.items():
        assert torch.equal(tensor, state[key]), key


def transformers_round_trips(cls: type, config, tmp_path) -> bool:
    """Whether transformers' own class survives its own save_pretrained/from_pretrained (4.49 and 4.50's
    RobertaForMaskedLM reload lm_head.bias as zeros): decided with transformers alone."""
    native = build_transformers_model(cls, config)
    native.save_pretrained(str(tmp_path / "native"))
    reloaded = cls.from_pretrained(str(tmp_path / "native"), attn_implementation="eager").eval()
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        return torch.allclose(logits_of(native(input_ids=input_ids, attention_mask=attention_mask)),
                              logits_of(reloaded(input_ids=input_ids, attention_mask=attention_mask)), atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_export_gives_transformers_class_with_same_weights_and_logits(case, tmp_path):
    model = build_archit(case)
    exported = model.toHuggingFace()
    expected_class = getattr(transformers, case.expected)
    assert type(exported) is expected_class
    assert not exported.training

    # Every tensor of the base model is archit's, copied (not shared).
    core_state = model.base_model.state_dict()
    exported_base = exported.base_model.state_dict()
    assert core_state.keys() == exported_base.keys()
    for key, tensor in core_state.items():
        assert torch.equal(exported_base[key], tensor), key
        assert exported_base[key].data_ptr() != tensor.data_ptr() or tensor.numel() == 0, key

    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        ours = model(input_ids=input_ids, attention_mask=attention_mask).logits
        theirs = logits_of(exported(input_ids=input_ids, attention_mask=attention_mask))
    torch.testing.assert_close(theirs, ours, atol=EXPORT_ATOL, rtol=EXPORT_ATOL)

    exported.save_pretrained(str(tmp_path / "exported"))
    assert_saved_tensors_are_the_models(exported, tmp_path / "exported")
    if not transformers_round_trips(expected_class, exported.config, tmp_path):
        pytest.skip(f"transformers {transformers.__version__}'s {case.expected} does not reload its own checkpoints")
    reloaded = expected_class.from_pretrained(str(tmp_path / "exported"), attn_implementation="eager").eval()
    with torch.no_grad():
        again = logits_of(reloaded(input_ids=input_ids, attention_mask=attention_mask))
    torch.testing.assert_close(again, ours, atol=EXPORT_ATOL, rtol=EXPORT_ATOL)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_export_then_import_round_trip(case, tmp_path):
    """archit -> transformers folder -> archit gives the logits back (both directions of the key table)."""
    model = build_archit(case)
    model.toHuggingFace().save_pretrained(str(tmp_path))
    back = getattr(tasks, case.task).from_pretrained(str(tmp_path), ARCHS[case.arch].base_class,
                                                     case.head_config(), attn_implementation="eager").eval()
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids, attention_mask).logits, model(input_ids, attention_mask).logits,
                                   atol=EXPORT_ATOL, rtol=EXPORT_ATOL)


def test_tied_export_stays_tied_and_shared_weights_are_shared():
    model = build_archit(CASES[6])  # RoBERTa ForMaskedLM, tied
    exported = model.toHuggingFace()
    assert exported.lm_head.decoder.weight is exported.roberta.embeddings.word_embeddings.weight
    shared = model.toHuggingFace(share_weights=True)
    assert shared.roberta.embeddings.word_embeddings.weight.data_ptr() == \
        model.base_model.embeddings.word_embeddings.weight.data_ptr()


def test_untied_export_stays_untied():
    model = build_archit(CASES[7])  # RoBERTa ForMaskedLM, untied
    exported = model.toHuggingFace()
    assert exported.config.tie_word_embeddings is False
    assert exported.lm_head.decoder.weight.data_ptr() != exported.roberta.embeddings.word_embeddings.weight.data_ptr()
    assert torch.equal(exported.lm_head.decoder.weight, model.head.dense2.weight)


def test_problem_type_of_multi_label_and_regression():
    arch = ARCHS["roberta"]
    for task, problem in ((ForMultiLabelSequenceClassification, "multi_label_classification"),
                          (ForSequenceRegression, "regression")):
        model = task.fromModelAndHeadConfig(arch.base_class(arch.make_config()),
                                            SequenceClassificationHeadConfig(num_labels=2, pooling="first"))
        assert model.toHuggingFace().config.problem_type == problem


def test_imported_transformers_model_exports_to_itself(tmp_path):
    """A transformers checkpoint, loaded into archit and exported again, equals the original tensor for tensor."""
    arch = ARCHS["roberta"]
    original = save_transformers_model(transformers.RobertaForTokenClassification, arch.make_config(num_labels=3),
                                       tmp_path)
    model = ForSingleLabelTokenClassification.from_pretrained(str(tmp_path), arch.base_class,
                                                               TokenClassificationHeadConfig(num_labels=3))
    exported = model.toHuggingFace().state_dict()
    for key, tensor in original.state_dict().items():
        assert torch.equal(exported[key], tensor), key


def _no_equivalent_cases():
    return [
        ("roberta", ForSingleLabelSequenceClassification, SequenceClassificationHeadConfig(num_labels=2),
         "no transformers equivalent"),
        ("gpt2", ForMaskedLM, MaskedLMHeadConfig(), "gpt2"),
        ("roberta", ForCausalLM, CausalLMHeadConfig(), "RobertaForCausalLM"),
        ("roberta", ForMaskedLM, MaskedLMHeadConfig(layer_norm_eps=0.5), "logits"),
    ]


@pytest.mark.parametrize("index", range(4), ids=["mean-pooling", "gpt2-mlm", "roberta-clm", "other-epsilon"])
def test_no_equivalent_is_a_clear_error(index):
    arch_name, task, head_config, message = _no_equivalent_cases()[index]
    arch = ARCHS[arch_name]
    model = task.fromModelAndHeadConfig(arch.base_class(arch.make_config()), head_config)
    with pytest.raises(NotImplementedError, match=message):
        model.toHuggingFace()


# ---------------------------------------------------------------------------------------------------------------------
# AutoBaseModel: the transformers class is whatever the family has for the task.

def _family(name: str):
    family = FAMILIES[name]
    if not family.available():
        pytest.skip(f"transformers {transformers.__version__} has no {family.core_class}")
    return family


def _auto_case(family, task_name: str, head_config, **overrides):
    torch.manual_seed(0)
    model = getattr(tasks, task_name).fromModelAndHeadConfig(AutoBaseModel(family.config(**overrides)), head_config)
    return perturb_(model).eval()


def _assert_exports_to(model, expected_class, tmp_path):
    exported = model.toHuggingFace()
    assert type(exported) is expected_class
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        ours = model(input_ids, attention_mask).logits
        torch.testing.assert_close(logits_of(exported(input_ids=input_ids, attention_mask=attention_mask)), ours,
                                   atol=EXPORT_ATOL, rtol=EXPORT_ATOL)
    exported.save_pretrained(str(tmp_path))
    assert_saved_tensors_are_the_models(exported, tmp_path)
    if not transformers_round_trips(expected_class, exported.config, tmp_path / "native"):
        pytest.skip(f"transformers {transformers.__version__}'s {expected_class.__name__} does not reload its own "
                    f"checkpoints")
    reloaded = expected_class.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    with torch.no_grad():
        torch.testing.assert_close(logits_of(reloaded(input_ids=input_ids, attention_mask=attention_mask)), ours,
                                   atol=EXPORT_ATOL, rtol=EXPORT_ATOL)


@pytest.mark.parametrize("name", ["distilbert", "electra", "xlm-roberta", "deberta-v2", "llama", "mistral", "qwen2"])
def test_auto_token_classification_exports_to_the_family_class(name, tmp_path):
    family = _family(name)
    model = _auto_case(family, "ForSingleLabelTokenClassification", TokenClassificationHeadConfig(num_labels=3))
    if family.token_classification is None:  # e.g. Llama before transformers had LlamaForTokenClassification
        with pytest.raises(NotImplementedError, match="ForTokenClassification"):
            model.toHuggingFace()
        return
    _assert_exports_to(model, family.token_classification, tmp_path)
    # And back: the transformers folder imports into archit, head config read from it.
    back = ForSingleLabelTokenClassification.from_pretrained(str(tmp_path), AutoBaseModel,
                                                             attn_implementation="eager").eval()
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids, attention_mask).logits, model(input_ids, attention_mask).logits,
                                   atol=EXPORT_ATOL, rtol=EXPORT_ATOL)


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_auto_llama_causal_lm_exports_to_llama_for_causal_lm(tie, tmp_path):
    model = _auto_case(_family("llama"), "ForCausalLM", CausalLMHeadConfig(tie_weights=tie))
    _assert_exports_to(model, transformers.LlamaForCausalLM, tmp_path)


def test_auto_xlm_roberta_masked_lm_exports_to_its_class(tmp_path):
    model = _auto_case(_family("xlm-roberta"), "ForMaskedLM", MaskedLMHeadConfig(), hidden_act="gelu")
    _assert_exports_to(model, transformers.XLMRobertaForMaskedLM, tmp_path)


def test_auto_electra_question_answering_exports_to_its_class(tmp_path):
    model = _auto_case(_family("electra"), "ForExtractiveQA", ExtractiveQAHeadConfig())
    _assert_exports_to(model, transformers.ElectraForQuestionAnswering, tmp_path)
