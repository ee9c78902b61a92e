"""The extended tasks (extractive QA with answerability, single-answer multiple choice, dependency parsing) and the
word-grouped and nested-batch model-with-heads under them. References are computed here: transformers' own base model on
the same checkpoint, the heads' tensors applied with torch.nn.functional and einsum, losses written out by hand."""
import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import RobertaConfig

from archit.instantiation.abstracts import AllHiddenStatesAndPooling
from archit.instantiation.basemodels import BertBaseModel, GPT2BaseModel, RobertaBaseModel
from archit.instantiation.extensions import (
    PoolingAndStridingConfig,
    SubwordPooling,
    flattenNestedBatches,
    unflattenNestedBatches,
    usableContextLength,
)
from archit.instantiation.heads import (
    Biaffine,
    DependencyParsingHeadConfig,
    ExtractiveAQAHeadConfig,
    SequenceClassificationHeadConfig,
)
from archit.instantiation.tasks import ForDependencyParsing, ForExtractiveAQA, ForSingleAnswerMultipleChoice
from archit.util import dataclass_from_dict

from tests.helpers import (
    ARCHS,
    assert_close,
    assert_same_outputs,
    bert_config,
    gpt2_config,
    load_archit,
    make_inputs,
    perturb_,
    read_checkpoint_tensors,
    read_json,
    roberta_config,
    transformers_reference,
)

ROBERTA = ARCHS["roberta"]
PAD = 1  # roberta_config()'s pad_token_id.
REPO = Path(__file__).resolve().parents[1]


def small_parser_config(**overrides):
    kwargs = dict(final_hidden_size_arcs=16, final_hidden_size_relations=8, head_dropout=0.0)
    kwargs.update(overrides)
    return DependencyParsingHeadConfig(**kwargs)


def word_ids(words_per_sentence, max_subwords=3, seed=0, pad=PAD):
    """B x W x S subword ids, padded with ``pad``; each word has 1..max_subwords subwords."""
    generator = torch.Generator().manual_seed(seed)
    batch, words = len(words_per_sentence), max(words_per_sentence)
    ids = torch.full((batch, words, max_subwords), pad, dtype=torch.long)
    for b, n in enumerate(words_per_sentence):
        for w in range(n):
            k = int(torch.randint(1, max_subwords + 1, (1,), generator=generator))
            ids[b, w, :k] = torch.randint(3, 98, (k,), generator=generator)
    return ids


def reference_word_embeddings(core, ids, pooling, layer_mix=None, pad=PAD):
    """Word embeddings computed one sentence at a time, without padding, by loops over the transformers core's outputs:
    the concatenated subwords of the sentence go through ``core``; ``layer_mix`` = (weights, gamma, n) mixes the last n
    hidden states as gamma * softmax(weights) . states; each word pools its subwords."""
    batch, words, _ = ids.shape
    out = torch.zeros(batch, words, core.config.hidden_size)
    for b in range(batch):
        word_tokens = [[int(t) for t in ids[b, w] if int(t) != pad] for w in range(words)]
        word_tokens = [tokens for tokens in word_tokens if tokens]
        flat = torch.tensor([[t for tokens in word_tokens for t in tokens]])
        with torch.no_grad():
            output = core(input_ids=flat, output_hidden_states=True)
        if layer_mix is None:
            states = output.last_hidden_state[0]
        else:
            weights, gamma, n = layer_mix
            probabilities = torch.exp(weights) / torch.exp(weights).sum()
            states = gamma * sum(p * h[0] for p, h in zip(probabilities, output.hidden_states[-n:]))
        position = 0
        for w, tokens in enumerate(word_tokens):
            vectors = states[position:position + len(tokens)]
            position += len(tokens)
            out[b, w] = {"FIRST": vectors[0], "LAST": vectors[-1], "MEAN": vectors.mean(dim=0)}[pooling]
    return out


def assert_finite_nonzero_grads(model, names):
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in names:
        assert grads[name] is not None, name
        assert torch.isfinite(grads[name]).all(), name
        assert grads[name].abs().sum() > 0, name


def load_parser(directory, head_config=None):
    return load_archit(ForDependencyParsing, directory, ROBERTA, head_config=head_config)


def parser_on_bare(roberta_bare, **overrides):
    """A parser on the bare checkpoint, its (zero-initialised) biaffine weights perturbed so that they matter."""
    model = load_parser(roberta_bare, small_parser_config(**overrides))
    perturb_(model.head, seed=5)
    return model


# ---------------------------------------------------------------------------------------------------------------------
# The published README example, verbatim.

def test_readme_dependency_parsing_example():
    model_with_head = ForDependencyParsing.fromModelAndHeadConfig(RobertaBaseModel(RobertaConfig()), DependencyParsingHeadConfig())

    assert model_with_head.config.head_config.num_labels == 0
    assert not hasattr(model_with_head.head, "rel_attn")
    # RobertaConfig() has 512 position embeddings; positions start at pad_token_id + 1 = 2, so 510 tokens fit.
    assert model_with_head._context_length == RobertaConfig().max_position_embeddings - RobertaConfig().pad_token_id - 1


# ---------------------------------------------------------------------------------------------------------------------
# No supar anywhere.

def test_supar_is_never_imported():
    """Neither at import nor lazily: no module of the package names supar (the published heads imported it inside
    DependencyParsingHead.__init__)."""
    # Imported here on purpose: what importing every module of the package puts into sys.modules is what is tested.
    import archit.instantiation.abstracts  # noqa: F401
    import archit.instantiation.basemodels  # noqa: F401
    import archit.instantiation.extensions  # noqa: F401
    import archit.instantiation.heads  # noqa: F401
    import archit.instantiation.tasks  # noqa: F401
    import archit.loading  # noqa: F401
    import archit.util  # noqa: F401
    assert not any(name == "supar" or name.startswith("supar.") for name in sys.modules)
    pattern = re.compile(r"^\s*(import\s+supar|from\s+supar)\b|import_module\(\s*['\"]supar", re.MULTILINE)
    offenders = [str(path) for folder in ("archit", "compat") for path in (REPO / folder).rglob("*.py")
                 if pattern.search(path.read_text(encoding="utf-8"))]
    assert offenders == []


# ---------------------------------------------------------------------------------------------------------------------
# Extractive QA with answerability.

def test_extractive_aqa_logits_and_loss(roberta_bare):
    model = load_archit(ForExtractiveAQA, roberta_bare, ROBERTA, head_config=ExtractiveAQAHeadConfig(0.3))
    perturb_(model.head)
    input_ids, attention_mask = make_inputs()
    input_ids, attention_mask = input_ids.repeat(2, 1), attention_mask.repeat(2, 1)  # 4 examples
    qa_labels = torch.tensor([[1, 3], [0, 0], [2, 2], [4, 99]])  # 99: past the input, ignored as in transformers
    ua_labels = torch.tensor([1, 0, 1, 1])
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=(qa_labels, ua_labels))
        hidden = transformers_reference(ROBERTA.core, roberta_bare)(input_ids=input_ids,
                                                                     attention_mask=attention_mask).last_hidden_state
    head = model.head
    qa_logits, ua_logits = out.logits
    assert qa_logits.shape == (4, 7, 2) and ua_logits.shape == (4, 2)
    assert_close(qa_logits, F.linear(hidden, head.qa_heads.weight, head.qa_heads.bias))
    mask = attention_mask.unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    ua = head.ua_head
    assert_close(ua_logits, F.linear(torch.tanh(F.linear(pooled, ua.dense1.weight, ua.dense1.bias)),
                                     ua.dense2.weight, ua.dense2.bias))

    answerable = [0, 2, 3]
    start = F.cross_entropy(qa_logits[answerable, :, 0], torch.tensor([1, 2, 4]))
    end_terms = [F.cross_entropy(qa_logits[i:i + 1, :, 1], qa_labels[i:i + 1, 1]) for i in (0, 2)]  # 99 is ignored
    expected = (start + sum(end_terms) / 2) / 2 + 0.3 * F.cross_entropy(ua_logits, ua_labels)
    assert_close(out.loss, expected)


def test_extractive_aqa_without_answerable_examples(roberta_bare):
    model = load_archit(ForExtractiveAQA, roberta_bare, ROBERTA, head_config=ExtractiveAQAHeadConfig(ua_loss_weight=2.0))
    input_ids, attention_mask = make_inputs()
    out = model(input_ids=input_ids, attention_mask=attention_mask,
                labels=(torch.tensor([[0, 0], [0, 0]]), torch.tensor([0, 0])))
    assert torch.isfinite(out.loss)
    assert_close(out.loss, 2.0 * F.cross_entropy(out.logits[1], torch.tensor([0, 0])))
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_extractive_aqa_trains_and_reloads(roberta_bare, tmp_path):
    model = load_archit(ForExtractiveAQA, roberta_bare, ROBERTA, head_config=ExtractiveAQAHeadConfig())
    assert model.config.head_config.ua_loss_weight == 1.0
    input_ids, attention_mask = make_inputs()
    model.train()
    model(input_ids=input_ids, attention_mask=attention_mask,
          labels=(torch.tensor([[1, 2], [0, 0]]), torch.tensor([1, 0]))).loss.backward()
    assert_finite_nonzero_grads(model, ["head.qa_heads.weight", "head.ua_head.dense2.weight",
                                        "model._core.embeddings.word_embeddings.weight"])

    model.eval()
    model.save_pretrained(tmp_path)
    assert read_json(tmp_path / "config.json")["head_config"] == {"ua_loss_weight": 1.0}
    reloaded = load_archit(ForExtractiveAQA, tmp_path, ROBERTA)
    with torch.no_grad():
        assert_same_outputs(reloaded(input_ids, attention_mask).logits, model(input_ids, attention_mask).logits)


# ---------------------------------------------------------------------------------------------------------------------
# Single-answer multiple choice on nested batches.

def choice_inputs(batch=2, choices=3, length=6, seed=1):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 98, (batch, choices, length), generator=generator)
    attention_mask = torch.ones(batch, choices, length, dtype=torch.long)
    attention_mask[0, 1, -2:] = 0
    attention_mask[1, 2, -3:] = 0
    return input_ids, attention_mask


@pytest.mark.parametrize("arch_name", ["roberta", "bert"])
def test_multiple_choice_equals_each_choice_alone(arch_name, bare_checkpoints):
    arch = ARCHS[arch_name]
    model = load_archit(ForSingleAnswerMultipleChoice, bare_checkpoints[arch_name], arch,
                        head_config=SequenceClassificationHeadConfig())
    assert model.config.head_config.num_labels == 1  # 0 ("not set") is filled in.
    perturb_(model.head)
    input_ids, attention_mask = choice_inputs()
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, :, 3:] = 1
    extra = {"token_type_ids": token_type_ids} if arch_name == "bert" else {}
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **extra)
    assert out.logits.shape == (2, 3, 1)

    reference = transformers_reference(arch.core, bare_checkpoints[arch_name])
    head = model.head
    expected = torch.zeros(2, 3)
    for c in range(3):
        kwargs = {k: v[:, c] for k, v in extra.items()}
        with torch.no_grad():
            hidden = reference(input_ids=input_ids[:, c], attention_mask=attention_mask[:, c], **kwargs).last_hidden_state
        mask = attention_mask[:, c].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        x = torch.tanh(F.linear(pooled, head.dense1.weight, head.dense1.bias))
        expected[:, c] = F.linear(x, head.dense2.weight, head.dense2.bias)[:, 0]
    assert_close(out.logits[..., 0], expected)
    assert_close(out.loss, F.cross_entropy(expected, labels))


def test_multiple_choice_num_labels(roberta_bare):
    given = SequenceClassificationHeadConfig()
    model = ForSingleAnswerMultipleChoice.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()), given)
    assert model.head.dense2.out_features == 1 and given.num_labels == 0  # The caller's config is not changed.
    with pytest.raises(ValueError, match="num_labels=1"):
        ForSingleAnswerMultipleChoice.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()),
                                                             SequenceClassificationHeadConfig(num_labels=3))
    with pytest.raises(ValueError, match="num_labels=1"):
        load_archit(ForSingleAnswerMultipleChoice, roberta_bare, ROBERTA,
                    head_config=SequenceClassificationHeadConfig(num_labels=2))


def test_multiple_choice_trains_and_reloads(roberta_bare, tmp_path):
    model = load_archit(ForSingleAnswerMultipleChoice, roberta_bare, ROBERTA,
                        head_config=SequenceClassificationHeadConfig(num_labels=1))
    input_ids, attention_mask = choice_inputs()
    model.train()
    model(input_ids=input_ids, attention_mask=attention_mask, labels=torch.tensor([1, 0])).loss.backward()
    assert_finite_nonzero_grads(model, ["head.dense1.weight", "head.dense2.weight",
                                        "model._core.embeddings.word_embeddings.weight"])
    model.eval()
    model.save_pretrained(tmp_path)
    reloaded = load_archit(ForSingleAnswerMultipleChoice, tmp_path, ROBERTA)
    assert reloaded.config.head_config.num_labels == 1
    with torch.no_grad():
        assert_same_outputs(reloaded(input_ids, attention_mask).logits, model(input_ids, attention_mask).logits)
    with pytest.raises(ValueError, match="input_ids must be 3-dimensional"):
        model(input_ids[0], attention_mask[0])


def test_nested_batch_helpers_round_trip():
    hidden = torch.randn(2, 3, 5, 4)
    nested = AllHiddenStatesAndPooling(last_hidden_state=hidden, hidden_states=(hidden * 2, hidden * 3),
                                       pooler_output=hidden[:, :, 0])
    flat, mask = flattenNestedBatches(nested, torch.ones(2, 3, 5))
    assert flat.last_hidden_state.shape == (6, 5, 4) and mask.shape == (6, 5) and flat.pooler_output.shape == (6, 4)
    assert torch.equal(flat.last_hidden_state[4], hidden[1, 1])
    back = unflattenNestedBatches(flat, 2, 3)
    assert torch.equal(back.last_hidden_state, hidden) and torch.equal(back.hidden_states[1], hidden * 3)
    assert torch.equal(back.pooler_output, hidden[:, :, 0])
    bare, _ = flattenNestedBatches(AllHiddenStatesAndPooling(last_hidden_state=hidden), torch.ones(2, 3, 5))
    assert bare.hidden_states is None and bare.pooler_output is None


# ---------------------------------------------------------------------------------------------------------------------
# Words grouped into subwords: layer mixing, word pooling, striding.

@pytest.mark.parametrize("pooling", ["FIRST", "LAST", "MEAN"])
@pytest.mark.parametrize("layer_pooling", [1, 3])
def test_word_pooling_equals_loop(roberta_bare, pooling, layer_pooling):
    config = PoolingAndStridingConfig(layer_pooling=layer_pooling, word_pooling=SubwordPooling[pooling])
    model = load_parser(roberta_bare, small_parser_config(extended_model_config=config))
    layer_mix = None
    if layer_pooling > 1:
        weights, gamma = torch.tensor([0.3, -1.0, 0.8]), 1.7
        with torch.no_grad():
            model.scalar_mix.weights.copy_(weights)
            model.scalar_mix.gamma.fill_(gamma)
        layer_mix = (weights, gamma, layer_pooling)
    else:
        assert model.scalar_mix is None
    ids = word_ids([5, 3, 4], seed=2)
    with torch.no_grad():
        words = model.callBaseModel(ids, None, do_drop_intermediates=True).last_hidden_state
    reference = transformers_reference(ROBERTA.core, roberta_bare)
    assert words.shape == (3, 5, roberta_config().hidden_size)
    assert_close(words, reference_word_embeddings(reference, ids, pooling, layer_mix))
    assert torch.equal(words[1, 3:], torch.zeros(2, words.size(-1)))  # Padding words.
    assert torch.equal(model.wordMask(ids), torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] * 4 + [False]]))


def test_striding_over_long_inputs():
    """Context of 10 tokens (12 positions, RoBERTa positions start at pad+1=2), stride 4: windows [0,10), [4,14),
    [8,18), [12,22), [16,25); each later window contributes its last 4 tokens (the last one 3). One subword per word, first-subword pooling, so the
    word embeddings are the token embeddings."""
    config = roberta_config(max_position_embeddings=12)
    assert usableContextLength(RobertaBaseModel, config) == 10
    torch.manual_seed(0)
    base = perturb_(RobertaBaseModel(config))
    head_config = small_parser_config(extended_model_config=PoolingAndStridingConfig(stride=4, word_pooling="first"))
    model = ForDependencyParsing.fromModelAndHeadConfig(base, head_config).eval()
    core = model.base_model

    tokens = torch.randint(3, 98, (2, 25), generator=torch.Generator().manual_seed(4))
    ids = tokens.unsqueeze(-1).clone()
    ids[1, 7:] = PAD  # The second sentence fits in the first window.
    with torch.no_grad():
        words = model.callBaseModel(ids, None, do_drop_intermediates=True).last_hidden_state
        first = core(input_ids=tokens[:1, :10]).last_hidden_state[0]
        second = core(input_ids=tokens[:1, 4:14]).last_hidden_state[0]
        last = core(input_ids=tokens[:1, 16:25]).last_hidden_state[0]  # Window [16, 26) cut at the input's end.
        short = core(input_ids=tokens[1:, :7]).last_hidden_state[0]
        with pytest.raises((IndexError, RuntimeError)):  # Why the usable length is 10, not 12.
            core(input_ids=tokens[:1, :12])
    assert words.shape == (2, 25, config.hidden_size)
    assert_close(words[0, :10], first)
    assert_close(words[0, 10:14], second[6:10])
    assert_close(words[0, 22:25], last[6:9])
    assert_close(words[1, :7], short)
    assert torch.equal(words[1, 7:], torch.zeros(18, config.hidden_size))


def test_base_model_without_context_limit_is_not_strided():
    class UnlimitedRoberta(RobertaBaseModel):
        @classmethod
        def standardiseConfig(cls, raw_config):
            return dataclasses.replace(super().standardiseConfig(raw_config), context_length=None)

    config = roberta_config()
    assert usableContextLength(UnlimitedRoberta, config) is None
    torch.manual_seed(0)
    head_config = small_parser_config(extended_model_config=PoolingAndStridingConfig(stride=4, word_pooling="first"))
    model = ForDependencyParsing.fromModelAndHeadConfig(perturb_(UnlimitedRoberta(config)), head_config).eval()
    tokens = torch.randint(3, 98, (1, 30), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        words = model.callBaseModel(tokens.unsqueeze(-1), None, do_drop_intermediates=True).last_hidden_state
        expected = model.base_model(input_ids=tokens).last_hidden_state
    assert_close(words, expected)


def test_usable_context_length():
    assert usableContextLength(RobertaBaseModel, roberta_config(max_position_embeddings=514)) == 512
    assert usableContextLength(BertBaseModel, bert_config(max_position_embeddings=512)) == 512
    assert usableContextLength(GPT2BaseModel, gpt2_config(n_positions=40)) == 40


def test_word_grouped_errors_name_the_argument(caplog):
    with pytest.raises(ValueError, match="pad_token_id"):
        ForDependencyParsing.fromModelAndHeadConfig(GPT2BaseModel(gpt2_config()), small_parser_config())
    model = ForDependencyParsing.fromModelAndHeadConfig(RobertaBaseModel(roberta_config()), small_parser_config())
    with pytest.raises(ValueError, match="input_ids must be 3-dimensional"):
        model(torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="layer_pooling"):
        ForDependencyParsing.fromModelAndHeadConfig(
            RobertaBaseModel(roberta_config()),
            small_parser_config(extended_model_config=PoolingAndStridingConfig(layer_pooling=4)))
    with pytest.raises(ValueError, match="word_pooling"):
        PoolingAndStridingConfig(word_pooling="median")
    with caplog.at_level("WARNING"):
        model = ForDependencyParsing.fromModelAndHeadConfig(
            RobertaBaseModel(roberta_config()),
            small_parser_config(extended_model_config=PoolingAndStridingConfig(stride=100)))
    assert model._stride == model._context_length == roberta_config().max_position_embeddings - 2
    assert "stride=100" in caplog.text


def test_subword_pooling_read_back():
    for value, member in [("3", SubwordPooling.MEAN), (1, SubwordPooling.FIRST), ("LAST", SubwordPooling.LAST),
                          ("last", SubwordPooling.LAST), (SubwordPooling.MEAN, SubwordPooling.MEAN)]:
        assert PoolingAndStridingConfig(word_pooling=value).word_pooling is member
    config = DependencyParsingHeadConfig(num_labels=4, extended_model_config=PoolingAndStridingConfig(
        layer_pooling=2, word_pooling=SubwordPooling.LAST, stride=7))
    as_json = json.loads(json.dumps(config.to_dict()))
    assert as_json["extended_model_config"] == {"layer_pooling": 2, "word_pooling": "2", "stride": 7}
    assert dataclass_from_dict(DependencyParsingHeadConfig, as_json) == config


# ---------------------------------------------------------------------------------------------------------------------
# Dependency parsing.

def test_biaffine_module():
    biaffine = Biaffine(5, n_out=3, scale=1, bias_x=True, bias_y=True)
    with torch.no_grad():
        biaffine.weight.normal_()
    x, y = torch.randn(2, 4, 5), torch.randn(2, 6, 5)
    manual = torch.zeros(2, 3, 4, 6)
    x1, y1 = torch.cat([x, torch.ones(2, 4, 1)], -1), torch.cat([y, torch.ones(2, 6, 1)], -1)
    for b in range(2):
        for o in range(3):
            manual[b, o] = x1[b] @ biaffine.weight[o] @ y1[b].T / 5
    assert_close(biaffine(x, y), manual)


@pytest.mark.parametrize("num_labels", [0, 4])
def test_dependency_parsing_scores_and_loss(roberta_bare, num_labels):
    model = parser_on_bare(roberta_bare, num_labels=num_labels)
    ids = word_ids([6, 4], seed=3)
    arcs = torch.tensor([[-100, 0, 1, 1, 3, 1], [-100, 0, 1, 2, -100, -100]])
    relations = torch.tensor([[-100, 0, 2, 3, 1, 2], [-100, 1, -100, 3, -100, -100]])
    with torch.no_grad():
        out = model(ids, labels=(arcs, relations))
        words = model.callBaseModel(ids, None, do_drop_intermediates=True).last_hidden_state
    arc_scores, relation_scores = out.logits
    assert arc_scores.shape == (2, 6, 6) and relation_scores.shape == (2, 6, 6, num_labels)

    head = model.head
    mlp = lambda m, x: F.leaky_relu(F.linear(x, m.linear.weight, m.linear.bias), 0.1)  # noqa: E731
    d, h = mlp(head.arc_mlp_d, words), mlp(head.arc_mlp_h, words)
    expected_arcs = torch.einsum("bik,okl,bjl->bij", torch.cat([d, torch.ones(2, 6, 1)], -1), head.arc_attn.weight, h)
    padding_heads = torch.tensor([[False] * 6, [False] * 4 + [True] * 2]).unsqueeze(1).expand(2, 6, 6)
    assert torch.equal(arc_scores[padding_heads], torch.full((12,), torch.finfo(torch.float32).min))
    assert_close(arc_scores[~padding_heads], expected_arcs[~padding_heads])

    # Loss by hand: mean over words with an arc label of -log softmax over heads, plus (labeled) the relation term.
    arc_terms = [-torch.log_softmax(arc_scores[b, i], -1)[arcs[b, i]] for b in range(2) for i in range(6) if arcs[b, i] >= 0]
    expected_loss = torch.stack(arc_terms).mean()
    if num_labels:
        rd, rh = mlp(head.rel_mlp_d, words), mlp(head.rel_mlp_h, words)
        one = torch.ones(2, 6, 1)
        expected_relations = torch.einsum("bik,okl,bjl->bijo", torch.cat([rd, one], -1), head.rel_attn.weight,
                                          torch.cat([rh, one], -1))
        assert_close(relation_scores, expected_relations)
        relation_terms = [-torch.log_softmax(relation_scores[b, i, arcs[b, i]], -1)[relations[b, i]]
                          for b in range(2) for i in range(6) if arcs[b, i] >= 0 and relations[b, i] >= 0]
        expected_loss = expected_loss + torch.stack(relation_terms).mean()
        with pytest.raises(ValueError, match="relations"):
            model(ids, labels=arcs)
    else:
        assert not any(".rel_" in name for name in model.state_dict())
        with torch.no_grad():  # Relation labels are ignored, and may be absent.
            assert_same_outputs(model(ids, labels=arcs).loss, out.loss)
            assert_same_outputs(model(ids, labels=(arcs, torch.full_like(arcs, -100))).loss, out.loss)
    assert_close(out.loss, expected_loss)


def test_dependency_parsing_half_precision(roberta_bare):
    """Padding heads get float16's most negative finite value (-1e32 would be -inf there), and the loss stays finite."""
    model = parser_on_bare(roberta_bare, num_labels=2).half()
    ids = word_ids([4, 2], seed=7)
    arcs = torch.tensor([[-100, 0, 1, 1], [-100, 0, -100, -100]])
    with torch.no_grad():
        out = model(ids, labels=(arcs, torch.tensor([[-100, 0, 1, 1], [-100, 1, -100, -100]])))
    arc_scores = out.logits[0]
    assert arc_scores.dtype == torch.float16
    assert torch.equal(arc_scores[1, :, 2:], torch.full((4, 2), -65504.0, dtype=torch.float16))
    assert torch.isfinite(out.loss)


def test_dependency_parsing_standardisation_exponent(roberta_bare):
    model = parser_on_bare(roberta_bare, standardisation_exponent=1)
    ids = word_ids([3, 3], seed=4)
    with torch.no_grad():
        arc_scores = model(ids).logits[0]
        words = model.callBaseModel(ids, None, do_drop_intermediates=True).last_hidden_state
    head = model.head
    d = F.leaky_relu(F.linear(words, head.arc_mlp_d.linear.weight, head.arc_mlp_d.linear.bias), 0.1)
    h = F.leaky_relu(F.linear(words, head.arc_mlp_h.linear.weight, head.arc_mlp_h.linear.bias), 0.1)
    expected = torch.einsum("bik,okl,bjl->bij", torch.cat([d, torch.ones(2, 3, 1)], -1), head.arc_attn.weight, h) / 16
    assert_close(arc_scores, expected)


@pytest.mark.parametrize("num_labels", [0, 3])
def test_dependency_parsing_trains_and_reloads(roberta_bare, tmp_path, num_labels):
    model = parser_on_bare(roberta_bare, num_labels=num_labels,
                           extended_model_config=PoolingAndStridingConfig(layer_pooling=2, word_pooling="last"))
    ids = word_ids([5, 3], seed=6)
    labels = (torch.tensor([[-100, 0, 1, 1, 2], [-100, 0, 1, -100, -100]]),
              torch.tensor([[-100, 0, 1, 2, 1], [-100, 2, 0, -100, -100]]))
    model.train()
    model(ids, labels=labels).loss.backward()
    names = ["head.arc_mlp_d.linear.weight", "head.arc_attn.weight", "scalar_mix.weights", "scalar_mix.gamma",
             "model._core.embeddings.word_embeddings.weight", "model._core.encoder.layer.1.output.dense.weight"]
    if num_labels:
        names += ["head.rel_mlp_h.linear.weight", "head.rel_attn.weight"]
    assert_finite_nonzero_grads(model, names)

    with torch.no_grad():
        model.scalar_mix.weights.copy_(torch.tensor([0.2, -0.4]))
    model.eval()
    model.save_pretrained(tmp_path)
    stored = read_json(tmp_path / "config.json")["head_config"]
    assert stored["num_labels"] == num_labels and stored["extended_model_config"]["word_pooling"] == "2"
    reloaded = load_parser(tmp_path)
    assert reloaded.config.head_config == model.config.head_config
    assert torch.equal(reloaded.scalar_mix.weights, torch.tensor([0.2, -0.4]))
    with torch.no_grad():
        assert_same_outputs(reloaded(ids).logits, model(ids).logits)


def test_dependency_parsing_from_bare_checkpoint_initialises_new_tensors(roberta_bare):
    model = load_parser(roberta_bare, small_parser_config(
        num_labels=2, extended_model_config=PoolingAndStridingConfig(layer_pooling=3)))
    tensors = dict(model.named_parameters())
    assert not any(t.is_meta or not torch.isfinite(t).all() for t in tensors.values())
    assert torch.equal(model.scalar_mix.weights, torch.zeros(3)) and torch.equal(model.scalar_mix.gamma, torch.ones(1))
    assert torch.equal(model.head.arc_attn.weight, torch.zeros(1, 17, 16))
    assert torch.equal(model.head.rel_attn.weight, torch.zeros(2, 9, 9))
    weight = model.head.arc_mlp_d.linear.weight  # 16 x 32, orthogonal rows
    assert_close(weight @ weight.T, torch.eye(16), atol=1e-5, rtol=1e-5)
    stored = read_checkpoint_tensors(roberta_bare)
    assert torch.equal(model.base_model.embeddings.word_embeddings.weight, stored["embeddings.word_embeddings.weight"])
