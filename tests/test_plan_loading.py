"""``plan_loading`` and kin: what ``from_pretrained`` would do, from the weight files' headers alone. Checked against
what ``from_pretrained(..., output_loading_info=True)`` then does on the same checkpoint (``tests/test_cli.py`` does so
on every kind of checkpoint, through ``archit inspect``)."""
import json

import pytest
import torch
from safetensors.torch import save_file

import archit.loading.loader as loader
from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import MaskedLMHeadConfig, TokenClassificationHeadConfig
from archit.instantiation.tasks import ForMaskedLM, ForSingleLabelTokenClassification
from archit.loading import plan_loading
from archit.loading.files import read_tensor_headers

from tests.helpers import HIDDEN, load_archit, read_checkpoint_tensors


def token_classifier(checkpoint, num_labels: int = 3, **kwargs):
    return ForSingleLabelTokenClassification.from_pretrained(
        str(checkpoint), RobertaBaseModel, TokenClassificationHeadConfig(num_labels=num_labels), **kwargs)


def test_plan_reads_no_tensor(roberta_bare, monkeypatch):
    """With the tensor reader gone, planning still answers, and what it answers is what loading does."""
    class NoReading:
        def __init__(self, *args, **kwargs):
            raise AssertionError("plan_loading opened the weight files for their tensors")

    _, info = token_classifier(roberta_bare, output_loading_info=True)
    monkeypatch.setattr(loader, "CheckpointReader", NoReading)
    plan = plan_loading(ForSingleLabelTokenClassification, str(roberta_bare), RobertaBaseModel,
                        TokenClassificationHeadConfig(num_labels=3))
    assert sorted(plan.missing) == sorted(info["missing_keys"]) == ["head.dense.bias", "head.dense.weight"]
    assert sorted(plan.unexpected) == sorted(info["unexpected_keys"])
    assert {k: list(v) for k, v in plan.converted.items()} == info["converted_keys"] and plan.error is None
    assert plan.tied is False


def test_headers_are_the_tensors_shapes_and_dtypes(roberta_bare, tmp_path):
    tensors = {"a": torch.zeros(2, 3, dtype=torch.bfloat16), "b": torch.ones(4, dtype=torch.int64)}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    torch.save(read_checkpoint_tensors(roberta_bare), str(tmp_path / "pytorch_model.bin"))
    headers = read_tensor_headers([str(tmp_path / "model.safetensors"), str(tmp_path / "pytorch_model.bin")])
    assert (headers["a"].shape, headers["a"].dtype, headers["a"].numel) == ((2, 3), "bfloat16", 6)
    assert (headers["b"].shape, headers["b"].dtype) == ((4,), "int64")
    for key, tensor in read_checkpoint_tensors(roberta_bare).items():
        assert headers[key].shape == tuple(tensor.shape) and headers[key].dtype == str(tensor.dtype)[len("torch."):]
        assert headers[key].path.endswith("pytorch_model.bin")


def test_plan_reports_what_loading_refuses(roberta_bare, tmp_path):
    """A head config whose shapes differ from the checkpoint's: loading raises, and the plan says so with the same
    message and the shapes from the headers; with ignore_mismatched_sizes both initialise the head anew."""
    token_classifier(roberta_bare, num_labels=3).save_pretrained(str(tmp_path))
    plan = plan_loading(ForSingleLabelTokenClassification, str(tmp_path), RobertaBaseModel,
                        TokenClassificationHeadConfig(num_labels=5))
    assert sorted(plan.mismatched) == [("head.dense.bias", (3,), (5,)),
                                               ("head.dense.weight", (3, HIDDEN), (5, HIDDEN))]
    with pytest.raises(ValueError) as raised:
        token_classifier(tmp_path, num_labels=5)
    assert plan.error == str(raised.value)
    _, info = token_classifier(tmp_path, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True)
    relaxed = plan_loading(ForSingleLabelTokenClassification, str(tmp_path), RobertaBaseModel,
                           TokenClassificationHeadConfig(num_labels=5), ignore_mismatched_sizes=True)
    assert relaxed.error is None
    assert sorted(relaxed.missing) == sorted(info["missing_keys"]) == ["head.dense.bias", "head.dense.weight"]


def test_plan_leaves_tying_to_the_tensors_where_only_they_can_tell(roberta_bare, tmp_path):
    """A published ArchIt LM checkpoint storing both matrices: loading compares them (here equal: tied); planning reads
    no tensor, so it answers tied None, with the same keys to load and initialise as loading."""
    model = load_archit(ForMaskedLM, roberta_bare, base_class=RobertaBaseModel, head_config=MaskedLMHeadConfig())
    save_file({key: tensor.clone().contiguous() for key, tensor in model.state_dict().items()},
              str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads(json.dumps(model.config.to_dict()))
    config["head_config"] = {}
    for key in ("task", "archit_version"):
        config.pop(key)
    (tmp_path / "config.json").write_text(json.dumps(config))
    reloaded, info = ForMaskedLM.from_pretrained(str(tmp_path), RobertaBaseModel, output_loading_info=True)
    plan = plan_loading(ForMaskedLM, str(tmp_path), RobertaBaseModel)
    assert reloaded.tiesWeights() and plan.tied is None
    assert sorted(plan.missing) == sorted(info["missing_keys"])
    assert sorted(plan.unexpected) == sorted(info["unexpected_keys"])
