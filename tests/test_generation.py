"""Generation: a causal-LM model-with-head generates as transformers' own ``AutoModelForCausalLM`` does, on the same
tiny checkpoint (written by transformers' ``save_pretrained``): the same tokens for greedy search, beam search and seeded
sampling, with and without the key-value cache, on a left-padded batch with its attention mask, and from
``inputs_embeds``; ``ModelWithHeads.generate(head=...)`` likewise; the ``generation_config`` built from the base config,
loaded from a checkpoint's ``generation_config.json`` and saved with the model, in the same commit as the rest."""
import json
import os

import pytest
import torch
import transformers
from packaging.version import Version

from archit import _compat as compat
from archit.instantiation.basemodels import AutoBaseModel
from archit.instantiation.heads import CausalLMHeadConfig, TokenClassificationHeadConfig
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import ForCausalLM, ForSingleLabelTokenClassification
from archit.loading.errors import CheckpointError

from tests.helpers import (
    CAUSAL_LMS,
    SEED,
    TRANSFORMERS_VERSION,
    left_padded_prompts,
    perturb_strongly_,
    save_causal_lm,
)

NEW_TOKENS = 8
MODES = {
    "greedy": {},
    "beam": {"num_beams": 3},
    "sampling": {"do_sample": True},
}


@pytest.fixture(scope="module")
def causal_lm_checkpoints(tmp_path_factory):
    """One tiny causal LM per family of ``CAUSAL_LMS``, saved by transformers (read-only for the tests)."""
    return {name: save_causal_lm(name, tmp_path_factory.mktemp(f"clm-{name}")) for name in CAUSAL_LMS}


@pytest.fixture(params=sorted(CAUSAL_LMS))
def family(request):
    return request.param


def reference_and_archit(folder, **kwargs):
    """transformers' own ``AutoModelForCausalLM`` and archit's ``ForCausalLM`` on the same checkpoint, eager attention,
    eval mode."""
    reference = transformers.AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager").eval()
    ours = ForCausalLM.from_pretrained(str(folder), AutoBaseModel, attn_implementation="eager", **kwargs).eval()
    return reference, ours


def prompts_for(model):
    """The left-padded batch, padded with the model's pad token (GPT-2 has none: its end-of-text token)."""
    pad = model.generation_config.pad_token_id
    pad = model.generation_config.eos_token_id if pad is None else pad
    input_ids, attention_mask = left_padded_prompts(pad)
    return input_ids, attention_mask, pad


def generate(model, seed: int = SEED, **kwargs):
    torch.manual_seed(seed)  # Sampling draws from torch's global generator, as in transformers' own tests.
    return model.generate(max_new_tokens=NEW_TOKENS, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# The same tokens as transformers.

@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_same_tokens_as_transformers(causal_lm_checkpoints, family, mode, use_cache):
    reference, ours = reference_and_archit(causal_lm_checkpoints[family])
    input_ids, attention_mask, pad = prompts_for(reference)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, pad_token_id=pad, use_cache=use_cache,
                  **MODES[mode])
    expected = generate(reference, **kwargs)
    actual = generate(ours, **kwargs)
    assert expected.shape[1] > input_ids.shape[1]
    assert len(set(expected[:, input_ids.shape[1]:].flatten().tolist())) > 2, "a degenerate reference proves little"
    assert torch.equal(actual, expected)


def test_same_scores_cache_and_outputs_as_transformers(causal_lm_checkpoints, family):
    """With ``return_dict_in_generate``: the same scores at every step, the same kind of cache (a legacy tuple or the
    ``Cache`` class transformers picks for the family on this release: the core's cache support, not the wrapper's),
    and the body's hidden states and attention weights at every step."""
    reference, ours = reference_and_archit(causal_lm_checkpoints[family])
    input_ids, attention_mask, pad = prompts_for(reference)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, pad_token_id=pad, return_dict_in_generate=True,
                  output_scores=True, output_hidden_states=True, output_attentions=True)
    expected, actual = generate(reference, **kwargs), generate(ours, **kwargs)
    assert torch.equal(actual.sequences, expected.sequences)
    torch.testing.assert_close(actual.scores, expected.scores)
    torch.testing.assert_close(actual.hidden_states, expected.hidden_states)
    torch.testing.assert_close(actual.attentions, expected.attentions)
    expected_cache, actual_cache = getattr(expected, compat.CACHE_NAME), getattr(actual, compat.CACHE_NAME)
    assert type(actual_cache) is type(expected_cache)


def test_same_tokens_from_inputs_embeds(causal_lm_checkpoints, family):
    """A prompt given as embeddings (the first step runs on them, the next ones on the generated tokens)."""
    reference, ours = reference_and_archit(causal_lm_checkpoints[family])
    input_ids, attention_mask, pad = prompts_for(reference)
    with torch.no_grad():
        inputs_embeds = reference.get_input_embeddings()(input_ids)
    kwargs = dict(inputs_embeds=inputs_embeds, attention_mask=attention_mask, pad_token_id=pad)
    expected = generate(reference, **kwargs)
    assert torch.equal(generate(ours, **kwargs), expected)


@pytest.mark.skipif(TRANSFORMERS_VERSION < Version("4.42.0.dev0"), reason="4.38-4.41 set a static cache up through "
                    "the model class's own _setup_cache (Llama's), which a model-with-head does not have")
def test_same_tokens_with_a_static_cache(causal_lm_checkpoints):
    """``cache_implementation="static"``: the release checks the model's ``_supports_static_cache`` (up to 4.5x) and
    sizes the cache from the text config; Llama's core supports it."""
    reference, ours = reference_and_archit(causal_lm_checkpoints["llama"])
    input_ids, attention_mask, pad = prompts_for(reference)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, pad_token_id=pad, cache_implementation="static")
    assert torch.equal(generate(ours, **kwargs), generate(reference, **kwargs))


def test_a_model_built_in_memory_generates_like_its_transformers_twin(family):
    """Not only a loaded model: one put together from a base model and a head config, with the head's matrix copied
    from transformers' model on the same body weights."""
    config = CAUSAL_LMS[family]()
    torch.manual_seed(SEED)
    reference = perturb_strongly_(transformers.AutoModelForCausalLM.from_config(config)).eval()
    body = AutoBaseModel(config)
    body.base_model.load_state_dict(reference.base_model.state_dict())
    tied = config.tie_word_embeddings  # GPT-2 ties its output matrix to the embeddings, Llama does not
    ours = ForCausalLM.fromModelAndHeadConfig(body, CausalLMHeadConfig(tie_weights=tied)).eval()
    with torch.no_grad():
        ours.get_output_embeddings().weight.copy_(reference.get_output_embeddings().weight)
    assert (ours.get_output_embeddings().weight is ours.get_input_embeddings().weight) == tied
    assert ours.generation_config == reference.generation_config
    input_ids, attention_mask, pad = prompts_for(reference)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, pad_token_id=pad, num_beams=2)
    assert torch.equal(generate(ours, **kwargs), generate(reference, **kwargs))


# ---------------------------------------------------------------------------------------------------------------------
# What transformers and peft read on a causal LM.

def test_a_causal_lm_is_a_generation_mixin_and_other_tasks_are_not():
    assert issubclass(ForCausalLM, transformers.GenerationMixin)
    assert ForCausalLM.can_generate()
    assert not ForSingleLabelTokenClassification.can_generate()

    class Subtask(ForCausalLM):  # A subclass (LaMoTO's kind) generates too: transformers looks through its bases.
        pass

    assert Subtask.can_generate()


def test_prepare_inputs_for_generation_gives_the_forward_its_inputs(causal_lm_checkpoints):
    """peft's ``CAUSAL_LM`` models call the wrapped model's ``prepare_inputs_for_generation``; its answer runs the
    model's forward as is."""
    _, ours = reference_and_archit(causal_lm_checkpoints["llama"])
    input_ids, attention_mask, _ = prompts_for(ours)
    inputs = ours.prepare_inputs_for_generation(input_ids, attention_mask=attention_mask, use_cache=False)
    assert torch.equal(inputs["input_ids"], input_ids)
    with torch.no_grad():
        assert ours(**inputs).logits.shape == (*input_ids.shape, ours.config.vocab_size)


def test_generate_through_a_wrapper_that_delegates(causal_lm_checkpoints):
    """peft calls ``self.base_model.generate(...)`` on a module that forwards unknown attributes to the model."""
    reference, ours = reference_and_archit(causal_lm_checkpoints["llama"])

    class Wrapper(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.model, name)

    input_ids, attention_mask, pad = prompts_for(reference)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, pad_token_id=pad)
    assert torch.equal(generate(Wrapper(ours), **kwargs), generate(reference, **kwargs))


def test_the_core_class_flags_are_the_models(causal_lm_checkpoints):
    """The class flags transformers reads on a model (``_supports_cache_class``, ``_supports_static_cache``,
    ``_supports_sdpa``, ``_is_stateful``, ... whichever this release has) are the core's, not ``PreTrainedModel``'s
    defaults: on the causal LM and on its base model."""
    for family in sorted(CAUSAL_LMS):
        _, ours = reference_and_archit(causal_lm_checkpoints[family])
        core_class = type(ours.base_model)
        flags = {name: getattr(core_class, name) for name in dir(core_class)
                 if (name.startswith("_supports_") or name in ("_is_stateful", "_can_compile_fullgraph"))
                 and isinstance(getattr(core_class, name), bool)}
        if family == "llama":  # Llama's core supports more than PreTrainedModel's defaults say, on every release.
            assert any(value != getattr(transformers.PreTrainedModel, name, False) for name, value in flags.items())
        for model in (ours, ours.model):
            assert {name: getattr(model, name) for name in flags} == flags, family


# ---------------------------------------------------------------------------------------------------------------------
# generation_config.

def test_generation_config_is_built_from_the_base_config_as_transformers_builds_it(causal_lm_checkpoints, family):
    reference, ours = reference_and_archit(causal_lm_checkpoints[family])
    expected = transformers.GenerationConfig.from_model_config(CAUSAL_LMS[family]())
    body = AutoBaseModel(CAUSAL_LMS[family]())
    built = ForCausalLM.fromModelAndHeadConfig(body, CausalLMHeadConfig())
    assert built.generation_config == expected
    assert (built.generation_config.bos_token_id, built.generation_config.eos_token_id) == \
        (CAUSAL_LMS[family]().bos_token_id, CAUSAL_LMS[family]().eos_token_id)
    assert ours.generation_config == reference.generation_config


def test_a_transformers_checkpoints_generation_config_is_honoured(tmp_path):
    save_causal_lm("llama", tmp_path)
    reference = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), attn_implementation="eager")
    # A generation config of its own, not one derived from the model config (which 4.36-4.39 would derive again).
    reference.generation_config = transformers.GenerationConfig(bos_token_id=1, eos_token_id=[2, 5], pad_token_id=0,
                                                                max_new_tokens=3, num_beams=2)
    reference.save_pretrained(str(tmp_path))
    reference = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    ours = ForCausalLM.from_pretrained(str(tmp_path), AutoBaseModel, attn_implementation="eager").eval()
    assert ours.generation_config == reference.generation_config
    input_ids, attention_mask, _ = prompts_for(reference)
    expected = reference.generate(input_ids=input_ids, attention_mask=attention_mask)  # the file's settings
    assert expected.shape[1] == input_ids.shape[1] + 3
    assert torch.equal(ours.generate(input_ids=input_ids, attention_mask=attention_mask), expected)


def test_generation_config_is_saved_and_loaded_again(causal_lm_checkpoints, tmp_path):
    _, ours = reference_and_archit(causal_lm_checkpoints["gpt2"])
    ours.generation_config.max_new_tokens = 4
    ours.generation_config.repetition_penalty = 1.5
    ours.save_pretrained(str(tmp_path))
    stored = json.loads((tmp_path / "generation_config.json").read_text())
    assert stored["max_new_tokens"] == 4 and stored["repetition_penalty"] == 1.5
    again = ForCausalLM.from_pretrained(str(tmp_path), AutoBaseModel)
    assert again.generation_config == ours.generation_config
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".archit")]
    # As transformers: only a model that generates has one.
    other = ForSingleLabelTokenClassification.from_pretrained(str(tmp_path), AutoBaseModel,
                                                              TokenClassificationHeadConfig(num_labels=3))
    other.save_pretrained(str(tmp_path / "token-classification"))
    assert "generation_config.json" not in os.listdir(tmp_path / "token-classification")


def test_the_export_to_transformers_generates_alike(causal_lm_checkpoints, family, tmp_path):
    """``toHuggingFace()`` carries the generation config: transformers' model, and its saved checkpoint, generate as the
    archit model does."""
    _, ours = reference_and_archit(causal_lm_checkpoints[family])
    built = ours.generation_config  # Settings of its own (4.36-4.39 derive one marked as from the model config again).
    ours.generation_config = transformers.GenerationConfig(bos_token_id=built.bos_token_id, pad_token_id=built.pad_token_id,
                                                           eos_token_id=built.eos_token_id, max_new_tokens=5, num_beams=2)
    exported = ours.toHuggingFace()
    assert exported.generation_config == ours.generation_config
    exported.save_pretrained(str(tmp_path))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    input_ids, attention_mask, pad = prompts_for(ours)
    expected = ours.generate(input_ids=input_ids, attention_mask=attention_mask, pad_token_id=pad)
    assert expected.shape[1] == input_ids.shape[1] + 5
    assert torch.equal(reloaded.generate(input_ids=input_ids, attention_mask=attention_mask, pad_token_id=pad),
                       expected)


def test_generation_config_keyword_wins_over_the_file(causal_lm_checkpoints):
    given = transformers.GenerationConfig(max_new_tokens=2, pad_token_id=0)
    _, ours = reference_and_archit(causal_lm_checkpoints["llama"], generation_config=given)
    assert ours.generation_config.max_new_tokens == 2


def test_the_generation_config_is_part_of_the_saves_commit(causal_lm_checkpoints, tmp_path, monkeypatch):
    """A save that fails after writing the generation config but before its commit leaves the previous checkpoint,
    generation config included, as it was (the file is written aside and published with the others)."""
    _, ours = reference_and_archit(causal_lm_checkpoints["llama"])
    ours.save_pretrained(str(tmp_path))
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    assert "generation_config.json" in before
    ours.generation_config.max_new_tokens = 7

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(ours.config), "to_json_file", fail)  # config.json comes after generation_config.json
    with pytest.raises(OSError, match="disk full"):
        ours.save_pretrained(str(tmp_path))
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


def test_a_damaged_generation_config_is_a_checkpoint_error(causal_lm_checkpoints, tmp_path):
    _, ours = reference_and_archit(causal_lm_checkpoints["llama"])
    ours.save_pretrained(str(tmp_path))
    (tmp_path / "generation_config.json").write_text('{"max_new_tokens": 3, "max_new_tokens": 4}')
    with pytest.raises(CheckpointError, match="generation_config.json"):
        ForCausalLM.from_pretrained(str(tmp_path), AutoBaseModel)


# ---------------------------------------------------------------------------------------------------------------------
# Several heads.

@pytest.fixture
def with_heads(causal_lm_checkpoints):
    """A llama body with a causal-LM head ``lm`` (imported with the body from transformers' checkpoint) and a token
    classification head ``ner``; and transformers' own causal LM on the same checkpoint."""
    reference, lm = reference_and_archit(causal_lm_checkpoints["llama"])
    model = ModelWithHeads.fromTaskModels({"lm": lm})
    model.addHead("ner", ForSingleLabelTokenClassification, TokenClassificationHeadConfig(num_labels=3))
    return model.eval(), reference


@pytest.mark.parametrize("mode", sorted(MODES))
def test_model_with_heads_generates_with_the_named_head(with_heads, mode):
    model, reference = with_heads
    input_ids, attention_mask, pad = prompts_for(reference)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, pad_token_id=pad, **MODES[mode])
    expected = generate(reference, **kwargs)
    assert torch.equal(generate(model, head="lm", **kwargs), expected)
    assert torch.equal(generate(model.asTask("lm"), **kwargs), expected)


def test_model_with_heads_refuses_a_missing_or_non_generating_head(with_heads):
    model, reference = with_heads
    input_ids, attention_mask, _ = prompts_for(reference)
    with pytest.raises(ValueError, match=r"needs head=.*\['lm'\]"):
        model.generate(input_ids=input_ids, attention_mask=attention_mask)
    with pytest.raises(ValueError, match=r"'ner'.*does not generate.*\['lm'\]"):
        model.generate(input_ids=input_ids, attention_mask=attention_mask, head="ner")
    with pytest.raises(KeyError, match=r"'pos'.*\['lm', 'ner'\]"):
        model.generate(input_ids=input_ids, attention_mask=attention_mask, head="pos")


def test_model_with_heads_saves_and_loads_its_generation_config(with_heads, tmp_path):
    model, _ = with_heads
    model.generation_config.max_new_tokens = 5
    assert model.asTask("lm").generation_config is model.generation_config
    model.save_pretrained(str(tmp_path))
    again = ModelWithHeads.from_pretrained(str(tmp_path), AutoBaseModel)
    assert again.generation_config == model.generation_config
    assert again.asTask("lm").generation_config is again.generation_config
    again.removeHead("lm")
    assert again.generation_config is None
    again.save_pretrained(str(tmp_path / "without-lm"))
    assert "generation_config.json" not in os.listdir(tmp_path / "without-lm")
