"""Bad input fails loudly, with an exception of a sensible type whose message names the thing at fault."""
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification

from tests.helpers import ARCHS, load_archit, loading_info_keys

ROBERTA = ARCHS["roberta"]


def token_head(num_labels=3):
    return TokenClassificationHeadConfig(num_labels=num_labels)


def token_task():
    return ForSingleLabelTokenClassification


def test_nonexistent_local_path(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises((OSError, ValueError)) as caught:
        load_archit(token_task(), missing, ROBERTA, head_config=token_head())
    assert str(missing) in str(caught.value)


def test_unknown_hub_id_offline():
    repo_id = "archit-tests-nobody/definitely-not-a-model"
    with pytest.raises((OSError, ValueError)) as caught:
        load_archit(token_task(), repo_id, ROBERTA, head_config=token_head())
    assert repo_id in str(caught.value)


def test_bare_checkpoint_without_head_config(roberta_bare):
    with pytest.raises(ValueError) as caught:
        load_archit(token_task(), roberta_bare, ROBERTA)
    message = str(caught.value).lower()
    assert "head_config" in message or "head config" in message


def test_wrong_base_model_class(gpt2_bare):
    with pytest.raises(ValueError) as caught:
        load_archit(token_task(), gpt2_bare, ROBERTA, head_config=token_head())
    assert "RobertaBaseModel" in str(caught.value)
    assert str(gpt2_bare) in str(caught.value)


@pytest.fixture
def three_label_checkpoint(roberta_bare, tmp_path):
    model = load_archit(token_task(), roberta_bare, ROBERTA, head_config=token_head(3))
    model.save_pretrained(str(tmp_path))
    return tmp_path


def test_head_shape_mismatch(three_label_checkpoint):
    with pytest.raises(ValueError) as caught:
        load_archit(token_task(), three_label_checkpoint, ROBERTA, head_config=token_head(5))
    assert "head.dense.weight" in str(caught.value) and "head.dense.bias" in str(caught.value)


def test_head_shape_mismatch_ignored(three_label_checkpoint):
    model, info = load_archit(token_task(), three_label_checkpoint, ROBERTA, head_config=token_head(5),
                              ignore_mismatched_sizes=True, output_loading_info=True)
    assert "head.dense.weight" in loading_info_keys(info["mismatched_keys"])
    assert model.head.dense.weight.shape == (5, ROBERTA.make_config().hidden_size)
    assert model.config.head_config.num_labels == 5


def test_checkpoint_of_another_family_with_same_key_names_warns(bare_checkpoints, caplog):
    """BERT's base keys have RoBERTa's names: the weights load, but the mix-up must be reported."""
    with caplog.at_level("WARNING", logger="archit"):
        load_archit(token_task(), bare_checkpoints["bert"], ROBERTA, head_config=token_head())
    assert any("'bert'" in record.getMessage() and "RobertaBaseModel" in record.getMessage()
               for record in caplog.records)


def _with_misnamed_key(source, target, old="embeddings.word_embeddings.weight", new="embeddings.word_embedding.weight"):
    shutil.copytree(source, target)
    tensors = load_file(str(target / "model.safetensors"))
    tensors[new] = tensors.pop(old)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    return tensors


def test_misnamed_base_key_raises_naming_it(roberta_bare, tmp_path):
    """A base tensor the checkpoint names in a way nothing maps (what a missed conversion looks like) while the base
    weight it should fill would be initialised anew: an error naming both, not a silently wrong model."""
    checkpoint = tmp_path / "misnamed"
    _with_misnamed_key(roberta_bare, checkpoint)
    with pytest.raises(ValueError) as caught:
        load_archit(token_task(), checkpoint, ROBERTA, head_config=token_head())
    message = str(caught.value)
    assert "embeddings.word_embedding.weight" in message
    assert "model._core.embeddings.word_embeddings.weight" in message
    assert "ignore_unplaced_weights=True" in message


def test_misnamed_base_key_accepted_knowingly(roberta_bare, tmp_path, caplog):
    checkpoint = tmp_path / "misnamed"
    tensors = _with_misnamed_key(roberta_bare, checkpoint)
    model, info = load_archit(token_task(), checkpoint, ROBERTA, head_config=token_head(),
                              ignore_unplaced_weights=True, output_loading_info=True)
    assert "model._core.embeddings.word_embeddings.weight" in loading_info_keys(info["missing_keys"])
    assert "embeddings.word_embedding.weight" in loading_info_keys(info["unexpected_keys"])
    assert not torch.equal(model.base_model.embeddings.word_embeddings.weight,
                           tensors["embeddings.word_embedding.weight"])
    assert "newly initialised" in caplog.text


def test_new_head_on_bare_checkpoint_is_no_error(roberta_bare, caplog):
    """The usual case, a new head on a base checkpoint, stays an info message."""
    with caplog.at_level(logging.INFO, logger="archit"):
        model, info = load_archit(token_task(), roberta_bare, ROBERTA, head_config=token_head(),
                                  output_loading_info=True)
    assert loading_info_keys(info["missing_keys"]) == {"head.dense.weight", "head.dense.bias"}
    head_records = [r for r in caplog.records if "newly initialised" in r.getMessage()]
    assert head_records and all(r.levelno == logging.INFO for r in head_records)
