"""``save_pretrained`` of every task writes the archit layout (nested config, ``model._core.``/``head.`` keys,
``model.safetensors`` or shards) and reloads with the same weights, bit for bit, and the same logits."""
import dataclasses
import json

import pytest
import torch

from archit.instantiation import heads, tasks
from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification

from tests.helpers import ARCHS, assert_same_outputs, load_archit, make_inputs, read_checkpoint_tensors, read_json


def task_cases():
    sequence, token = heads.SequenceClassificationHeadConfig, heads.TokenClassificationHeadConfig
    return {
        "token": (tasks.ForSingleLabelTokenClassification, token(num_labels=3), "roberta"),
        "sequence": (tasks.ForSingleLabelSequenceClassification, sequence(num_labels=3), "roberta"),
        "multilabel": (tasks.ForMultiLabelSequenceClassification, sequence(num_labels=4), "roberta"),
        "regression": (tasks.ForSequenceRegression, sequence(num_labels=1), "roberta"),
        "mlm": (tasks.ForMaskedLM, heads.MaskedLMHeadConfig(), "roberta"),
        "clm": (tasks.ForCausalLM, heads.CausalLMHeadConfig(), "gpt2"),
        "qa": (tasks.ForExtractiveQA, heads.ExtractiveQAHeadConfig(), "roberta"),
    }


TASKS = ["token", "sequence", "multilabel", "regression", "mlm", "clm", "qa"]


def build(case, bare_checkpoints):
    task, head_config, arch_name = task_cases()[case]
    arch = ARCHS[arch_name]
    return task, head_config, arch, load_archit(task, bare_checkpoints[arch_name], arch, head_config=head_config)


def logits_of(model):
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


@pytest.mark.parametrize("case", TASKS)
def test_save_and_reload(case, bare_checkpoints, tmp_path):
    task, head_config, arch, model = build(case, bare_checkpoints)
    model.save_pretrained(str(tmp_path))
    assert (tmp_path / "model.safetensors").is_file()
    assert not (tmp_path / "pytorch_model.bin").exists()

    config = json.loads((tmp_path / "config.json").read_text())
    expected_base = arch.make_config().to_dict()
    for key in ("model_type", "vocab_size", "n_embd" if arch.name == "gpt2" else "hidden_size"):
        assert config["base_model_config"][key] == expected_base[key], key
    # The head config as given, with what the head chose from the base config recorded (the MLM head's epsilon and
    # activation).
    recorded = {k: v for k, v in config["head_config"].items() if k not in ("layer_norm_eps", "hidden_act")}
    assert recorded == {k: v for k, v in dataclasses.asdict(head_config).items() if k in recorded}
    assert config["head_config"] == dataclasses.asdict(model.config.head_config)

    tensors = read_checkpoint_tensors(tmp_path)
    assert all(k.startswith("model._core.") or k.startswith("head.") for k in tensors), sorted(tensors)
    for key, tensor in model.base_model.state_dict().items():
        assert torch.equal(tensors[f"model._core.{key}"], tensor), key

    reloaded = load_archit(task, tmp_path, arch)
    assert reloaded.config.head_config == model.config.head_config
    assert_same_outputs(logits_of(reloaded), logits_of(model))


@pytest.mark.parametrize("case", ["token", "mlm"])
def test_sharded_save_and_reload(case, bare_checkpoints, tmp_path):
    task, head_config, arch, model = build(case, bare_checkpoints)
    model.save_pretrained(str(tmp_path), max_shard_size="50KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1
    assert set(index["weight_map"].values()) == {p.name for p in shards}
    assert not (tmp_path / "model.safetensors").exists()
    assert set(index["weight_map"]) == set(read_checkpoint_tensors(tmp_path))

    reloaded = load_archit(task, tmp_path, arch)
    assert_same_outputs(logits_of(reloaded), logits_of(model))


@pytest.mark.parametrize("case", ["mlm", "clm"])
def test_tied_matrix_saved_once(case, bare_checkpoints, tmp_path):
    task, head_config, arch, model = build(case, bare_checkpoints)
    embedding = model.base_model.get_input_embeddings().weight
    model.save_pretrained(str(tmp_path))
    tensors = read_checkpoint_tensors(tmp_path)
    copies = [k for k, v in tensors.items() if v.shape == embedding.shape and torch.equal(v, embedding)]
    assert len(copies) == 1, copies
    reloaded = load_archit(task, tmp_path, arch)
    head_linear = reloaded.head.dense2 if case == "mlm" else reloaded.head.dense
    assert head_linear.weight is reloaded.base_model.get_input_embeddings().weight


def test_default_attention_survives_save_and_reload(roberta_bare, tmp_path):
    """Without attn_implementation=, the reloaded model chooses its attention as the saved one did (4.48-4.49 store a
    runtime flag that, written to config.json, froze the reload on eager) and gives the same logits."""
    model = ForSingleLabelTokenClassification.from_pretrained(str(roberta_bare), RobertaBaseModel,
                                                              TokenClassificationHeadConfig(num_labels=3))
    model.save_pretrained(str(tmp_path))
    assert "_attn_implementation_autoset" not in read_json(tmp_path / "config.json")["base_model_config"]
    reloaded = ForSingleLabelTokenClassification.from_pretrained(str(tmp_path), RobertaBaseModel)
    assert reloaded.base_model.config._attn_implementation == model.base_model.config._attn_implementation
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        assert_same_outputs(reloaded(input_ids, attention_mask).logits, model(input_ids, attention_mask).logits)
