"""The implementation choices a transformers release makes when it builds a model (``attn_implementation``; from 5.0 also
``experts_implementation``, how mixture-of-experts layers compute) are made for archit's models by the same release,
the same way (issue 20): with nothing requested, the body runs what transformers' own ``AutoModelForCausalLM`` /
``AutoModel`` picks on the same checkpoint and dtype; a requested one is taken, or refused, as transformers takes or
refuses it; and ``model.config`` reports what the body runs.

The reference is transformers' own class on the same checkpoint, a tiny Mixtral causal LM (a family on every release
from 4.36). Logits are compared exactly: both sides run the same transformers layers on the same weights, cast from the
same float32 file into fresh bfloat16 tensors (no memory-mapped views, whose alignment can change which kernels run), so
any difference is a difference of implementation, such as 5.x's ``grouped_mm`` experts against the ``eager`` loop.
"""
import re
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest
import torch
import transformers

from archit.instantiation.basemodels import AutoBaseModel
from archit.instantiation.heads import CausalLMHeadConfig
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import ForCausalLM

from tests.helpers import (
    TRANSFORMERS_VERSION,
    make_inputs,
    mixtral_config,
    save_transformers_model,
    skip_on_era,
    transformers_dtype_kwargs,
)

IMPLEMENTATION_FIELDS = ("_attn_implementation", "_experts_implementation")

with_experts_implementations = skip_on_era("4.36", "4.50", reason="no choice of experts implementation before 5.0")
without_experts_implementations = skip_on_era("5.0", reason="5.x chooses an experts implementation")


@pytest.fixture(scope="module")
def mixtral_checkpoint(tmp_path_factory) -> Path:
    """A tiny ``MixtralForCausalLM`` saved by transformers (float32)."""
    directory = tmp_path_factory.mktemp("mixtral-causal-lm")
    save_transformers_model(transformers.MixtralForCausalLM, mixtral_config(), directory)
    return directory


def implementations(config: Any) -> Dict[str, Optional[str]]:
    """What a config says its model runs with (``None`` for a choice the installed release does not make)."""
    return {name: getattr(config, name, None) for name in IMPLEMENTATION_FIELDS}


def load_both(checkpoint: Path, dtype: Optional[torch.dtype] = None, **kwargs: Any) -> Tuple[Any, Any]:
    """archit's ``ForCausalLM`` (head imported from the checkpoint) and transformers' ``AutoModelForCausalLM`` on
    ``checkpoint``, with the same keyword arguments, in eval mode."""
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        str(checkpoint), **(transformers_dtype_kwargs(dtype) if dtype is not None else {}), **kwargs)
    ours = ForCausalLM.from_pretrained(str(checkpoint), AutoBaseModel, dtype=dtype, **kwargs)
    return ours.eval(), theirs.eval()


def assert_reports_what_runs(ours: Any, theirs: Any) -> None:
    """archit's model-with-head and its body report what transformers' own model runs with."""
    expected = implementations(theirs.config)
    assert implementations(ours.base_model.config) == expected
    assert implementations(ours.config) == expected


def assert_same_logits(ours: Any, theirs: Any) -> None:
    """The same logits, bit for bit. Compared in float32: transformers 4.36-4.4x's ``MixtralForCausalLM`` returns its
    logits upcast to float32 (exactly: every bfloat16 is a float32), archit's causal LM in the dtype it computes in."""
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        actual = ours(input_ids, attention_mask).logits.float()
        expected = theirs(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)


def test_defaults_are_what_transformers_picks(mixtral_checkpoint):
    ours, theirs = load_both(mixtral_checkpoint, torch.bfloat16)
    assert theirs.config._attn_implementation is not None
    assert_reports_what_runs(ours, theirs)


@with_experts_implementations
def test_default_experts_implementation_is_what_transformers_picks(mixtral_checkpoint):
    """5.x picks one (``grouped_mm`` where the layers support it) when nothing is requested; so does archit's body,
    which archit's own wrapper classes must not pre-empt with ``eager``."""
    ours, theirs = load_both(mixtral_checkpoint, torch.bfloat16)
    assert theirs.config._experts_implementation is not None
    assert ours.base_model.config._experts_implementation == theirs.config._experts_implementation
    assert ours.config._experts_implementation == theirs.config._experts_implementation


def test_default_bfloat16_logits_are_transformers(mixtral_checkpoint):
    assert_same_logits(*load_both(mixtral_checkpoint, torch.bfloat16))


@with_experts_implementations
def test_experts_implementation_eager_is_transformers(mixtral_checkpoint):
    ours, theirs = load_both(mixtral_checkpoint, torch.bfloat16, experts_implementation="eager")
    assert theirs.config._experts_implementation == "eager"
    assert_reports_what_runs(ours, theirs)
    assert_same_logits(ours, theirs)


@with_experts_implementations
def test_unknown_experts_implementation_is_refused_as_transformers_refuses_it(mixtral_checkpoint):
    with pytest.raises(ValueError, match="experts_implementation"):
        transformers.AutoModelForCausalLM.from_pretrained(str(mixtral_checkpoint), experts_implementation="no_such")
    with pytest.raises(ValueError, match="experts_implementation"):
        ForCausalLM.from_pretrained(str(mixtral_checkpoint), AutoBaseModel, experts_implementation="no_such")


@without_experts_implementations
def test_experts_implementation_is_refused_where_transformers_refuses_it(mixtral_checkpoint):
    """4.x have no experts implementations; their ``from_pretrained`` refuses the keyword (an unexpected keyword
    argument of the model's constructor), and so does archit's, saying which release this is."""
    with pytest.raises(TypeError, match="experts_implementation"):
        transformers.AutoModelForCausalLM.from_pretrained(str(mixtral_checkpoint), experts_implementation="eager")
    with pytest.raises(TypeError, match="experts_implementation") as refusal:
        ForCausalLM.from_pretrained(str(mixtral_checkpoint), AutoBaseModel, experts_implementation="eager")
    assert str(TRANSFORMERS_VERSION) in str(refusal.value)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_attn_implementation_is_what_transformers_runs(mixtral_checkpoint, attn_implementation):
    """Taken where transformers takes it; refused where transformers refuses it (4.36's Mixtral has no SDPA)."""
    try:
        transformers.AutoModelForCausalLM.from_pretrained(str(mixtral_checkpoint), attn_implementation=attn_implementation)
    except ValueError as refusal:  # "MixtralForCausalLM does not support ...": archit's core is a MixtralModel.
        reason = str(refusal).split(" ", 1)[1].split(".")[0]
        with pytest.raises(ValueError, match=re.escape(reason)):
            ForCausalLM.from_pretrained(str(mixtral_checkpoint), AutoBaseModel, attn_implementation=attn_implementation)
        return
    ours, theirs = load_both(mixtral_checkpoint, torch.bfloat16, attn_implementation=attn_implementation)
    assert theirs.config._attn_implementation == attn_implementation
    assert_reports_what_runs(ours, theirs)
    assert_same_logits(ours, theirs)


def test_base_model_and_model_with_heads_run_what_transformers_picks(mixtral_checkpoint):
    theirs = transformers.AutoModel.from_pretrained(str(mixtral_checkpoint))
    expected = implementations(theirs.config)
    base = AutoBaseModel.from_pretrained(str(mixtral_checkpoint))
    assert implementations(base.config) == implementations(base.base_model.config) == expected
    heads = ModelWithHeads.from_pretrained(str(mixtral_checkpoint), AutoBaseModel,
                                           {"lm": (ForCausalLM, CausalLMHeadConfig(tie_weights=False))})
    assert implementations(heads.config) == implementations(heads.base_model.config) == expected


@with_experts_implementations
def test_base_model_and_model_with_heads_take_experts_implementation(mixtral_checkpoint):
    theirs = transformers.AutoModel.from_pretrained(str(mixtral_checkpoint), experts_implementation="eager")
    expected = implementations(theirs.config)
    assert expected["_experts_implementation"] == "eager"
    base = AutoBaseModel.from_pretrained(str(mixtral_checkpoint), experts_implementation="eager")
    assert implementations(base.config) == implementations(base.base_model.config) == expected
    heads = ModelWithHeads.from_pretrained(str(mixtral_checkpoint), AutoBaseModel,
                                           {"lm": (ForCausalLM, CausalLMHeadConfig(tie_weights=False))},
                                           experts_implementation="eager")
    assert implementations(heads.config) == implementations(heads.base_model.config) == expected


def test_models_built_from_a_config_run_what_transformers_builds():
    """Without loading: a body and a model-with-head built from a config, against transformers' own classes built from
    the same config."""
    expected = implementations(transformers.MixtralModel(mixtral_config()).config)
    assert implementations(transformers.MixtralForCausalLM(mixtral_config()).config) == expected
    body = AutoBaseModel(mixtral_config())
    model = ForCausalLM.fromModelAndHeadConfig(body, CausalLMHeadConfig(tie_weights=False))
    assert implementations(body.base_model.config) == expected
    assert implementations(model.config) == expected
