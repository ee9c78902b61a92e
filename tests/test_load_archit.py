"""archit's own checkpoints: written by ``save_pretrained`` (this version) or in the published ArchIt layout
(``pytorch_model.bin`` with ``model._core.*``/``head.*`` keys), reloaded without a head config; a head config given
by the caller wins over the checkpoint's."""
import json

import torch
import transformers

from conftest import (
    ARCHS,
    assert_close,
    assert_same_outputs,
    build_transformers_model,
    load_archit,
    make_inputs,
    read_checkpoint_tensors,
    roberta_config,
)

ROBERTA = ARCHS["roberta"]


def roberta_base_from_bare(bare_dir):
    """A RobertaBaseModel whose core got the bare checkpoint's tensors through plain ``load_state_dict``."""
    from archit.instantiation.basemodels import RobertaBaseModel
    base = RobertaBaseModel(roberta_config())
    missing, unexpected = base.base_model.load_state_dict(read_checkpoint_tensors(bare_dir), strict=False)
    assert not missing and all(k.startswith("pooler.") for k in unexpected)
    return base


def logits_of(model):
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def test_from_model_and_head_config_save_reload(roberta_bare, tmp_path):
    from archit.instantiation.heads import TokenClassificationHeadConfig
    from archit.instantiation.tasks import ForSingleLabelTokenClassification
    head_config = TokenClassificationHeadConfig(num_labels=3)
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(roberta_base_from_bare(roberta_bare), head_config)
    model.eval()
    model.save_pretrained(str(tmp_path))

    reloaded = load_archit(ForSingleLabelTokenClassification, tmp_path, ROBERTA)
    assert type(reloaded.config.head_config) is TokenClassificationHeadConfig
    assert reloaded.config.head_config == head_config
    assert_same_outputs(logits_of(reloaded), logits_of(model))


def write_published_archit_checkpoint(directory, reference: transformers.RobertaForTokenClassification):
    """The layout the published ArchIt (<= 2026.4.1, transformers <= 4.49) wrote."""
    config = {"base_model_config": reference.config.to_dict(), "head_config": {"num_labels": reference.num_labels},
              "transformers_version": "4.49.0"}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    state = reference.state_dict()
    weights = {f"model._core.{k[len('roberta.'):]}": v.clone() for k, v in state.items() if k.startswith("roberta.")}
    weights["head.dense.weight"] = state["classifier.weight"].clone()
    weights["head.dense.bias"] = state["classifier.bias"].clone()
    torch.save(weights, str(directory / "pytorch_model.bin"))


def test_published_archit_checkpoint(tmp_path):
    from archit.instantiation.heads import TokenClassificationHeadConfig
    from archit.instantiation.tasks import ForSingleLabelTokenClassification
    reference = build_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=4))
    write_published_archit_checkpoint(tmp_path, reference)

    model = load_archit(ForSingleLabelTokenClassification, tmp_path, ROBERTA)
    assert model.config.head_config == TokenClassificationHeadConfig(num_labels=4)
    assert torch.equal(model.head.dense.weight, reference.classifier.weight)
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask).logits
    assert_close(logits_of(model), expected)


def test_caller_head_config_wins(roberta_bare, tmp_path):
    from archit.instantiation.heads import MaskedLMHeadConfig
    from archit.instantiation.tasks import ForMaskedLM
    untied = load_archit(ForMaskedLM, roberta_bare, ROBERTA, head_config=MaskedLMHeadConfig(tie_weights=False))
    untied.save_pretrained(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["head_config"]["tie_weights"] is False

    model = load_archit(ForMaskedLM, tmp_path, ROBERTA, head_config=MaskedLMHeadConfig(tie_weights=True))
    assert model.config.head_config.tie_weights is True
    assert model.head.dense2.weight is model.base_model.get_input_embeddings().weight
    assert torch.equal(model.base_model.get_input_embeddings().weight,
                       untied.base_model.get_input_embeddings().weight)
