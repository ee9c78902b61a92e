"""Families whose checkpoints transformers 5.x converts on load (``tests/data/converted/``, made by
``tests/data/make_converted_fixtures.py``): a Mixtral base whose experts transformers 4.57 stored one by one (5.x fuses
them), and a GPT-NeoX causal LM whose output matrix 4.x calls ``embed_out`` (``lm_head`` from 5.14).

On every release: archit's outputs equal transformers' own ``AutoModel``/``AutoModelForCausalLM`` on the same
checkpoint wherever that reproduces the outputs 4.57 computed; archit checkpoints saved on 4.57 and on 5.x load with
the logits they were saved with; and what archit saves is in the original (4.x) layout, on every release."""
from pathlib import Path

import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from archit.instantiation.basemodels import AutoBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForCausalLM, ForSingleLabelTokenClassification

from tests.helpers import assert_close, load_archit

CONVERTED_DIR = Path(__file__).resolve().parent / "data" / "converted"
TRANSFORMERS_DIR = CONVERTED_DIR / "tf4.57" / "transformers"
ARCHIT_FOLDERS = sorted(p.parent for p in CONVERTED_DIR.glob("tf*/archit/*/config.json"))


def stored_outputs(folder: Path) -> dict:
    return torch.load(str(folder / "outputs.pt"), weights_only=True)


def file_keys(folder: Path) -> set:
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        return set(handle.keys())


def auto_base_model():
    return AutoBaseModel


def token_classifier(folder: Path, **kwargs):
    return load_archit(ForSingleLabelTokenClassification, folder, base_class=auto_base_model(),
                       head_config=TokenClassificationHeadConfig(num_labels=3), **kwargs)


def causal_lm(folder: Path, **kwargs):
    return load_archit(ForCausalLM, folder, base_class=auto_base_model(), **kwargs)


def transformers_reproduces(actual: torch.Tensor, stored: torch.Tensor, what: str) -> None:
    """Skip where transformers' own class on this release does not reproduce 4.57's outputs: there it is not a
    reference for archit."""
    if not torch.allclose(actual, stored, atol=1e-5, rtol=1e-5):
        pytest.skip(f"transformers {transformers.__version__}'s own {what} differs from 4.57's outputs by "
                    f"{(actual - stored).abs().max():.2e}")


def test_fixtures_are_committed():
    assert (TRANSFORMERS_DIR / "mixtral_base" / "outputs.pt").is_file()
    assert (TRANSFORMERS_DIR / "gpt_neox_causal_lm" / "outputs.pt").is_file()
    versions = {folder.parent.parent.name for folder in ARCHIT_FOLDERS}
    assert {"tf4.57", "tf5.23"} <= versions, versions


def test_mixtral_base_checkpoint_in_4x_layout():
    folder = TRANSFORMERS_DIR / "mixtral_base"
    stored = stored_outputs(folder)
    reference = transformers.AutoModel.from_pretrained(str(folder), attn_implementation="eager").float().eval()
    with torch.no_grad():
        expected = reference(input_ids=stored["input_ids"], attention_mask=stored["attention_mask"]).last_hidden_state
    transformers_reproduces(expected, stored["last_hidden_state"], "MixtralModel")

    model, info = token_classifier(folder, output_loading_info=True)
    assert not info["unexpected_keys"]
    assert {k for k in info["missing_keys"]} == {"head.dense.weight", "head.dense.bias"}
    with torch.no_grad():
        hidden = model.model(stored["input_ids"], stored["attention_mask"]).last_hidden_state
    assert_close(hidden, expected)
    assert_close(hidden, stored["last_hidden_state"])


def test_mixtral_conversion_is_reported_only_where_the_release_converts():
    """``output_loading_info`` names the tensors built by transformers' rules, with the checkpoint keys they came from:
    on 5.x the fused experts (from the per-expert tensors); on 4.x nothing is converted."""
    _, info = token_classifier(TRANSFORMERS_DIR / "mixtral_base", output_loading_info=True)
    converted = info["converted_keys"]
    if transformers.__version__ >= "5":
        fused = [key for key in converted if key.startswith("model._core.layers.0.") and "experts" in key]
        assert fused, converted
        sources = sorted(k for key in fused for k in converted[key])
        assert sources == sorted(f"layers.0.block_sparse_moe.experts.{e}.{w}.weight"
                                 for e in range(4) for w in ("w1", "w2", "w3"))
    else:
        assert converted == {}


def test_gpt_neox_causal_lm_imports_its_output_matrix():
    """The head comes from the checkpoint's output matrix (``embed_out`` in the file; transformers' own class names it
    on every release), not newly initialised."""
    folder = TRANSFORMERS_DIR / "gpt_neox_causal_lm"
    stored = stored_outputs(folder)
    reference = transformers.AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager")
    reference = reference.float().eval()
    with torch.no_grad():
        expected = reference(input_ids=stored["input_ids"], attention_mask=stored["attention_mask"]).logits
    transformers_reproduces(expected, stored["logits"], "GPTNeoXForCausalLM")

    model, info = causal_lm(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.head_config.tie_weights is False
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        assert torch.equal(model.head.dense.weight, handle.get_tensor("embed_out.weight"))
    with torch.no_grad():
        logits = model(stored["input_ids"], stored["attention_mask"]).logits
    assert_close(logits, expected)


@pytest.mark.parametrize("folder", ARCHIT_FOLDERS, ids=[f"{p.parent.parent.name}-{p.name}" for p in ARCHIT_FOLDERS])
def test_archit_checkpoint_of_another_release_loads_with_its_logits(folder):
    stored = stored_outputs(folder)
    model = load_archit(_task_of(folder), folder, base_class=auto_base_model())
    with torch.no_grad():
        logits = model(stored["input_ids"], stored["attention_mask"]).logits
    assert_close(logits, stored["logits"])


def _task_of(folder: Path) -> type:
    return ForCausalLM if "causal_lm" in folder.name else ForSingleLabelTokenClassification


@pytest.mark.parametrize("name", ["mixtral_token_classification", "gpt_neox_causal_lm"])
def test_saves_are_in_the_original_layout_on_every_release(name, tmp_path):
    """What archit writes on this release has exactly the keys (and tensors) it wrote on 4.57, which predates every
    conversion: 5.x reverses its load-time conversions on save, as its own save_pretrained does."""
    written_on_457 = CONVERTED_DIR / "tf4.57" / "archit" / name
    model = load_archit(_task_of(written_on_457), written_on_457, base_class=auto_base_model())
    model.save_pretrained(str(tmp_path))
    assert file_keys(tmp_path) == file_keys(written_on_457)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as ours, \
            safe_open(str(written_on_457 / "model.safetensors"), "pt") as theirs:
        for key in theirs.keys():
            assert torch.equal(ours.get_tensor(key), theirs.get_tensor(key)), key


def test_key_mapping_renames_checkpoint_keys_on_every_release(tmp_path):
    """``from_pretrained(key_mapping=...)``: a checkpoint whose keys were renamed loads when the mapping renames them
    back (4.36-4.49 have no such argument in transformers; archit gives it 4.50's meaning there)."""
    source = TRANSFORMERS_DIR / "mixtral_base"
    tensors = {key.replace("self_attn.", "attention_block."): t for key, t in load_file(str(source / "model.safetensors")).items()}
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((source / "config.json").read_text())

    with pytest.raises(ValueError, match="attention_block"):
        token_classifier(tmp_path)
    model = token_classifier(tmp_path, key_mapping={r"attention_block\.": "self_attn."})
    stored = stored_outputs(source)
    with torch.no_grad():
        hidden = model.model(stored["input_ids"], stored["attention_mask"]).last_hidden_state
    assert_close(hidden, stored["last_hidden_state"])


def test_base_model_from_pretrained_converts_too():
    """``BaseModel.from_pretrained`` goes through the same conversion as the model-with-head."""
    folder = TRANSFORMERS_DIR / "mixtral_base"
    stored = stored_outputs(folder)
    base = auto_base_model().from_pretrained(str(folder), attn_implementation="eager")
    with torch.no_grad():
        hidden = base(stored["input_ids"], stored["attention_mask"]).last_hidden_state
    assert_close(hidden, stored["last_hidden_state"])
