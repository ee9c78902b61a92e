"""Training a tiny biaffine parser (``ForDependencyParsing``) on a synthetic treebank whose trees follow a fixed rule:
the loss must fall well below where it started, and the trained parser must find most heads, labeled and unlabeled."""
from typing import List, Tuple

import pytest
import torch

from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import DependencyParsingHeadConfig
from archit.instantiation.tasks import ForDependencyParsing

from tests.helpers import roberta_config

PAD, ROOT = 1, 0  # roberta_config(): pad_token_id=1, bos_token_id=0 (the root "word" <s>).
VERBS, NOUNS, DETS, ADJS = range(10, 15), range(20, 30), range(30, 33), range(40, 45)
CLASSES = [("VERB", VERBS), ("NOUN", NOUNS), ("DET", DETS), ("ADJ", ADJS)]
RELATIONS = {"root": 0, "VERB": 1, "NOUN": 2, "DET": 3, "ADJ": 4}  # Below a verb, a word's relation is its class.
SENTENCES, MAX_WORDS, MAX_SUBWORDS = 48, 10, 2


def subwords(word: int) -> List[int]:
    """Odd word ids are split in two subwords."""
    return [word, 70 + word % 20] if word % 2 else [word]


def synthetic_treebank(seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids B x W x S, arcs B x W, relations B x W)``. Word 0 is the root (<s>, no labels). Every other word's
    head is the nearest preceding verb, else the root; its relation is "root" under the root, else its own class."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.full((SENTENCES, MAX_WORDS, MAX_SUBWORDS), PAD, dtype=torch.long)
    arcs = torch.full((SENTENCES, MAX_WORDS), -100, dtype=torch.long)
    relations = torch.full((SENTENCES, MAX_WORDS), -100, dtype=torch.long)
    for b in range(SENTENCES):
        ids[b, 0, 0] = ROOT
        length = int(torch.randint(5, MAX_WORDS, (1,), generator=generator))
        last_verb = 0
        for w in range(1, length + 1):
            name, vocabulary = CLASSES[int(torch.randint(len(CLASSES), (1,), generator=generator))]
            word = vocabulary[int(torch.randint(len(vocabulary), (1,), generator=generator))]
            pieces = subwords(word)
            ids[b, w, :len(pieces)] = torch.tensor(pieces)
            arcs[b, w] = last_verb
            relations[b, w] = RELATIONS["root"] if last_verb == 0 else RELATIONS[name]
            if name == "VERB":
                last_verb = w
    return ids, arcs, relations


def train(num_labels: int, steps: int = 60) -> Tuple[List[float], float, float]:
    """Losses per step, and the trained parser's head and relation accuracy on the treebank."""
    ids, arcs, relations = synthetic_treebank()
    torch.manual_seed(0)
    base = RobertaBaseModel(roberta_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    head_config = DependencyParsingHeadConfig(num_labels=num_labels, final_hidden_size_arcs=32,
                                              final_hidden_size_relations=16, head_dropout=0.0)
    model = ForDependencyParsing.fromModelAndHeadConfig(base, head_config)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    labels = (arcs, relations) if num_labels else arcs
    losses = []
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        loss = model(ids, labels=labels).loss
        loss.backward()
        optimiser.step()
        losses.append(loss.item())

    model.eval()
    with torch.no_grad():
        arc_scores, relation_scores = model(ids).logits
    words = arcs.ge(0)
    predicted_heads = arc_scores.argmax(-1)
    head_accuracy = predicted_heads[words].eq(arcs[words]).float().mean().item()
    relation_accuracy = float("nan")
    if num_labels:
        at_gold = relation_scores[words][torch.arange(int(words.sum())), arcs[words]]
        relation_accuracy = at_gold.argmax(-1).eq(relations[words]).float().mean().item()
    return losses, head_accuracy, relation_accuracy


def test_treebank_follows_its_rule():
    ids, arcs, relations = synthetic_treebank()
    assert ids.shape == (SENTENCES, MAX_WORDS, MAX_SUBWORDS)
    for b in range(SENTENCES):
        verbs = [w for w in range(MAX_WORDS) if int(ids[b, w, 0]) in VERBS]
        for w in range(1, MAX_WORDS):
            if int(ids[b, w, 0]) == PAD:
                assert arcs[b, w] == -100
                continue
            expected = max([v for v in verbs if v < w], default=0)
            assert arcs[b, w] == expected
            assert (relations[b, w] == 0) == (expected == 0)
    assert arcs.ge(1).any() and arcs.eq(0).any() and ids[:, :, 1].ne(PAD).any()


@pytest.mark.parametrize("num_labels", [len(RELATIONS), 0], ids=["labeled", "arc-only"])
def test_parser_learns_synthetic_treebank(num_labels):
    losses, head_accuracy, relation_accuracy = train(num_labels)
    initial, final = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert all(torch.isfinite(torch.tensor(losses)))
    assert final < 0.5 * initial, (initial, final)
    assert head_accuracy > 0.9, head_accuracy
    if num_labels:
        assert relation_accuracy > 0.9, relation_accuracy
