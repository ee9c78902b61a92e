"""Checkpoints of transformers' own task models (``RobertaForTokenClassification``, ``GPT2LMHeadModel``, ...) load into
the matching archit task with the head's weights: logits equal those of the transformers model that wrote the folder,
losses equal independent computations and transformers' own loss.

The reference is the saved transformers model itself, not ``from_pretrained`` of the folder: transformers 4.49's
``RobertaForMaskedLM.from_pretrained`` drops ``lm_head.bias`` (loads zeros), which is not ours to test."""
import pytest
import torch
import torch.nn.functional as F
import transformers

from archit.instantiation.heads import (
    CausalLMHeadConfig,
    ExtractiveQAHeadConfig,
    MaskedLMHeadConfig,
    SequenceClassificationHeadConfig,
    TokenClassificationHeadConfig,
)
from archit.instantiation.tasks import (
    ForCausalLM,
    ForExtractiveQA,
    ForMaskedLM,
    ForSingleLabelSequenceClassification,
    ForSingleLabelTokenClassification,
)

from tests.helpers import (
    ARCHS,
    assert_close,
    load_archit,
    make_inputs,
    read_checkpoint_tensors,
    roberta_config,
    save_transformers_model,
)


def assert_base_equals_checkpoint(model, directory, prefix):
    tensors = read_checkpoint_tensors(directory)
    for key, tensor in model.base_model.state_dict().items():
        assert torch.equal(tensor, tensors[f"{prefix}.{key}"]), key


def test_token_classification(arch, tmp_path):
    reference = save_transformers_model(arch.token_classification, arch.make_config(num_labels=5), tmp_path)
    model = load_archit(ForSingleLabelTokenClassification, tmp_path, arch,
                        head_config=TokenClassificationHeadConfig(num_labels=5))
    assert_base_equals_checkpoint(model, tmp_path, arch.prefix)

    input_ids, attention_mask = make_inputs()
    labels = torch.randint(0, 5, input_ids.shape, generator=torch.Generator().manual_seed(1))
    labels[attention_mask == 0] = -100
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        expected = reference(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert_close(out.logits, expected.logits)
    assert_close(out.loss, F.cross_entropy(out.logits.reshape(-1, 5), labels.reshape(-1), ignore_index=-100))
    assert_close(out.loss, expected.loss)


def test_extractive_qa(arch, tmp_path):
    reference = save_transformers_model(arch.question_answering, arch.make_config(), tmp_path)
    model = load_archit(ForExtractiveQA, tmp_path, arch, head_config=ExtractiveQAHeadConfig())
    assert_base_equals_checkpoint(model, tmp_path, arch.prefix)

    input_ids, attention_mask = make_inputs()
    labels = torch.tensor([[1, 3], [0, 4]])  # B x 2: (start, end)
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        expected = reference(input_ids=input_ids, attention_mask=attention_mask,
                             start_positions=labels[:, 0], end_positions=labels[:, 1])
    assert out.logits.shape == (*input_ids.shape, 2)
    assert_close(out.logits, torch.stack([expected.start_logits, expected.end_logits], dim=-1))
    start_loss = F.cross_entropy(out.logits[..., 0], labels[:, 0])
    end_loss = F.cross_entropy(out.logits[..., 1], labels[:, 1])
    independent = (start_loss + end_loss) / 2
    assert_close(out.loss, independent)
    assert_close(out.loss, expected.loss)


def causal_labels(input_ids, attention_mask):
    return input_ids.masked_fill(attention_mask == 0, -100)


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_gpt2_lm_head_model_to_causal_lm(tmp_path, tie):
    arch = ARCHS["gpt2"]
    reference = save_transformers_model(transformers.GPT2LMHeadModel, arch.make_config(), tmp_path)
    model = load_archit(ForCausalLM, tmp_path, arch, head_config=CausalLMHeadConfig(tie_weights=tie))
    assert_base_equals_checkpoint(model, tmp_path, arch.prefix)

    embedding = model.base_model.get_input_embeddings().weight
    if tie:
        assert model.head.dense.weight is embedding
    else:
        assert model.head.dense.weight is not embedding
        assert model.head.dense.weight.data_ptr() != embedding.data_ptr()
        assert torch.equal(model.head.dense.weight, read_checkpoint_tensors(tmp_path)["transformer.wte.weight"])
    assert model.head.dense.bias is None

    input_ids, attention_mask = make_inputs()
    labels = causal_labels(input_ids, attention_mask)
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        expected = reference(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert_close(out.logits, expected.logits)
    vocab = out.logits.shape[-1]
    independent = F.cross_entropy(out.logits[:, :-1].reshape(-1, vocab), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert_close(out.loss, independent)
    assert_close(out.loss, expected.loss)


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_roberta_for_masked_lm_to_masked_lm(tmp_path, tie):
    arch = ARCHS["roberta"]
    reference = save_transformers_model(transformers.RobertaForMaskedLM, roberta_config(), tmp_path)
    model = load_archit(ForMaskedLM, tmp_path, arch, head_config=MaskedLMHeadConfig(tie_weights=tie))
    assert_base_equals_checkpoint(model, tmp_path, arch.prefix)

    tensors = read_checkpoint_tensors(tmp_path)
    assert torch.equal(model.head.dense1.weight, tensors["lm_head.dense.weight"])
    assert torch.equal(model.head.layer_norm.weight, tensors["lm_head.layer_norm.weight"])
    assert torch.equal(model.head.dense2.bias, tensors["lm_head.bias"])
    embedding = model.base_model.get_input_embeddings().weight
    if tie:
        assert model.head.dense2.weight is embedding
    else:
        assert model.head.dense2.weight.data_ptr() != embedding.data_ptr()
        assert torch.equal(model.head.dense2.weight, tensors["roberta.embeddings.word_embeddings.weight"])

    input_ids, attention_mask = make_inputs()
    labels = torch.full_like(input_ids, -100)
    labels[0, 2], labels[1, 4], labels[0, 5] = 7, 11, 13
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        expected = reference(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert_close(out.logits, expected.logits)
    vocab = out.logits.shape[-1]
    assert_close(out.loss, F.cross_entropy(out.logits.reshape(-1, vocab), labels.reshape(-1), ignore_index=-100))
    assert_close(out.loss, expected.loss)


def test_bert_for_masked_lm_reads_activation_and_epsilon_from_the_config(tmp_path):
    """BERT's LM head uses the config's hidden_act and layer_norm_eps; with values other than RoBERTa's, the logits
    only match when the archit head reads them too."""
    arch = ARCHS["bert"]
    reference = save_transformers_model(transformers.BertForMaskedLM,
                                        arch.make_config(hidden_act="relu", layer_norm_eps=1e-3), tmp_path)
    model = load_archit(ForMaskedLM, tmp_path, arch, head_config=MaskedLMHeadConfig())
    tensors = read_checkpoint_tensors(tmp_path)
    assert torch.equal(model.head.dense1.weight, tensors["cls.predictions.transform.dense.weight"])
    assert torch.equal(model.head.dense2.bias, tensors["cls.predictions.bias"])
    assert model.head.layer_norm.eps == 1e-3

    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask)
        expected = reference(input_ids=input_ids, attention_mask=attention_mask)
    assert_close(out.logits, expected.logits)


@pytest.mark.parametrize("give_head_config", [True, False], ids=["head-config", "no-head-config"])
def test_roberta_for_sequence_classification_with_first_token_pooling(tmp_path, give_head_config):
    """RoBERTa's classification head (first token, dense, tanh, out_proj) is the sequence head with pooling="first";
    without a head config, the head config is read from the checkpoint (num_labels from id2label)."""
    arch = ARCHS["roberta"]
    reference = save_transformers_model(transformers.RobertaForSequenceClassification, roberta_config(num_labels=4),
                                        tmp_path)
    head_config = SequenceClassificationHeadConfig(num_labels=4, pooling="first") if give_head_config else None
    model = load_archit(ForSingleLabelSequenceClassification, tmp_path, arch, head_config=head_config)
    assert model.config.head_config.num_labels == 4
    tensors = read_checkpoint_tensors(tmp_path)
    assert torch.equal(model.head.dense1.weight, tensors["classifier.dense.weight"])
    assert torch.equal(model.head.dense2.weight, tensors["classifier.out_proj.weight"])

    input_ids, attention_mask = make_inputs()
    labels = torch.tensor([3, 1])
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        expected = reference(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert_close(out.logits, expected.logits)
    assert_close(out.loss, F.cross_entropy(out.logits, labels))


def test_mean_pooling_sequence_head_is_not_imported(tmp_path, caplog):
    """The published mean-pooling head computes another function: transformers' classifier is reported unused."""
    save_transformers_model(transformers.RobertaForSequenceClassification, roberta_config(num_labels=4), tmp_path)
    model, info = load_archit(ForSingleLabelSequenceClassification, tmp_path, ARCHS["roberta"],
                              head_config=SequenceClassificationHeadConfig(num_labels=4), output_loading_info=True)
    assert {"classifier.dense.weight", "classifier.out_proj.weight"} <= set(info["unexpected_keys"])
    assert "head.dense1.weight" in info["missing_keys"]
