"""
Tiny local stand-ins for what LaMoTO loads from the hub, for ``lamoto_smoke.py``: checkpoints (random 2-layer models
saved with ``save_pretrained``, with tokenisers that need no vocabulary files) and LaMoTO's MBR, SST-2 and DP tasks
subclassed only to load a dozen in-memory examples instead of a hub dataset (and, for MBR and SST-2, to compute no
``evaluate.load(...)`` metrics, which are hub scripts).

A module of its own, not part of the script: ``datasets`` pickles the task (a ``map`` function's closure holds it) to
its worker processes, which must import its class by name.
"""
from pathlib import Path
from typing import Dict

import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value
from lamoto.tasks import DP, MBR, SST2
from lamoto.tasks._core import MetricSetup
from modest.formats.trivial import TrivialSegmentation
from modest.interfaces.datasets import ModestDataset
from modest.interfaces.readers import ModestReader
from transformers import (
    ByT5Tokenizer,
    CanineConfig,
    CanineModel,
    CanineTokenizer,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaModel,
)


def build_checkpoints(folder: Path) -> Dict[str, str]:
    """Random 2-layer models saved with save_pretrained, each with a tokeniser that needs no vocabulary files:
    - canine:  ``CanineModel`` (architectures ["CanineModel"]) with ``CanineTokenizer`` (one id per character), as
               LaMoTO's MBR default (google/canine-c);
    - roberta: ``RobertaModel`` (architectures ["RobertaModel"]), the base model LaMoTO's DP default loads;
    - roberta-seqcls: ``RobertaForSequenceClassification`` with 2 labels (architectures
               ["RobertaForSequenceClassification"]);
    the RoBERTa ones with ``ByT5Tokenizer`` (one id per byte; a Python tokeniser on every transformers release)."""
    torch.manual_seed(0)
    paths = {}
    canine = CanineConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          max_position_embeddings=256, num_hash_functions=4, num_hash_buckets=64, downsampling_rate=4,
                          upsampling_kernel_size=4, local_transformer_stride=32)
    paths["canine"] = str(folder / "tiny-canine")
    CanineModel(canine).save_pretrained(paths["canine"])
    CanineTokenizer().save_pretrained(paths["canine"])

    byt5 = ByT5Tokenizer()
    roberta = RobertaConfig(vocab_size=len(byt5), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=130, type_vocab_size=1,
                            pad_token_id=byt5.pad_token_id, bos_token_id=byt5.eos_token_id,
                            eos_token_id=byt5.eos_token_id)
    paths["roberta"] = str(folder / "tiny-roberta")
    RobertaModel(roberta).save_pretrained(paths["roberta"])
    byt5.save_pretrained(paths["roberta"])

    seqcls = RobertaConfig(**{**roberta.to_dict(), "num_labels": 2})
    paths["roberta-seqcls"] = str(folder / "tiny-roberta-seqcls")
    RobertaForSequenceClassification(seqcls).save_pretrained(paths["roberta-seqcls"])
    byt5.save_pretrained(paths["roberta-seqcls"])
    return paths


SEGMENTED_WORDS = [
    ("unhappiness", ("un", "happi", "ness")), ("rethinking", ("re", "think", "ing")), ("kindness", ("kind", "ness")),
    ("replayed", ("re", "play", "ed")), ("unkindly", ("un", "kind", "ly")), ("thinkers", ("think", "er", "s")),
    ("players", ("play", "er", "s")), ("walking", ("walk", "ing")), ("rewalked", ("re", "walk", "ed")),
    ("happily", ("happi", "ly")), ("books", ("book", "s")), ("bookish", ("book", "ish")), ("unplayable",
    ("un", "play", "able")), ("talkers", ("talk", "er", "s")), ("retalking", ("re", "talk", "ing")),
    ("darkness", ("dark", "ness")), ("darkly", ("dark", "ly")), ("unread", ("un", "read")),
    ("readers", ("read", "er", "s")), ("rereading", ("re", "read", "ing")),
]

SENTENCES = [
    ("a warm and funny film", 1), ("dull , slow and far too long", 0), ("one of the best films of the year", 1),
    ("the plot makes no sense at all", 0), ("a moving story , well told", 1), ("i wanted my two hours back", 0),
    ("bright , sharp and clever", 1), ("flat jokes and a tired cast", 0), ("a small gem", 1), ("a mess", 0),
    ("it works , and it works well", 1), ("nothing here works", 0), ("lovely", 1), ("boring", 0),
]

# Universal Dependencies rows as the hub's universal_dependencies dataset gives them: heads are strings, "None" for the
# multi-word token itself (here "don't", before its words "do" and "n't"), which LaMoTO's FilterAndCorrectUDtypes drops;
# heads count the words without it.
UD_ROWS = [
    (["The", "cat", "sat", "."], ["2", "3", "0", "3"], ["det", "nsubj", "root", "punct"]),
    (["A", "dog", "barked", "loudly", "."], ["2", "3", "0", "3", "3"], ["det", "nsubj", "root", "advmod", "punct"]),
    (["I", "don't", "do", "n't", "know", "."], ["4", "None", "4", "4", "0", "4"], ["nsubj", "_", "aux", "advmod",
     "root", "punct"]),
    (["She", "reads", "books", "."], ["2", "0", "2", "2"], ["nsubj", "root", "obj", "punct"]),
    (["We", "saw", "the", "red", "car", "."], ["2", "0", "5", "5", "2", "2"], ["nsubj", "root", "det", "amod", "obj",
     "punct"]),
    (["Birds", "fly", "."], ["2", "0", "2"], ["nsubj", "root", "punct"]),
    (["They", "ate", "fresh", "bread", "today", "."], ["2", "0", "4", "2", "2", "2"], ["nsubj", "root", "amod", "obj",
     "obl", "punct"]),
    (["He", "is", "tall", "."], ["3", "3", "0", "3"], ["nsubj", "cop", "root", "punct"]),
]


# MBR's and SST-2's metrics are evaluate.load(...) scripts from the hub: those two compute none (the loss still ranks
# checkpoints, as LaMoTO's default rank_checkpoints_using_loss does). DP keeps its metric, which is LaMoTO's own.
NO_HUB_METRICS = MetricSetup(to_compute=[], to_track={}, to_rank=None)


class InMemoryReader(ModestReader):
    """MoDeST reader of SEGMENTED_WORDS (no file behind it)."""

    def _generateRaw(self, path):
        yield from SEGMENTED_WORDS

    def _parseRaw(self, raw, id):
        word, morphs = raw
        return TrivialSegmentation(id=id, word=word, segmentation=morphs)

    def _createWriter(self):
        raise NotImplementedError


class TinyMorphologies(ModestDataset):
    """A MoDeST dataset of a few English words and their morphs, instead of CELEX (a download)."""

    def getCollectionName(self) -> str:
        return "TinyInMemory"

    def _readers(self):
        return [InMemoryReader()]

    def _files(self):
        return [Path("in-memory")]

    def _getLanguage(self):
        return "English"


class TinyMBR(MBR):
    """LaMoTO's MBR task with class weights (``weighted_labels=True``) on the tiny MoDeST dataset."""

    def __init__(self):
        super().__init__(morphologies=TinyMorphologies(), dataset_out_of_context=True, weighted_labels=True)
        self.metric_config = NO_HUB_METRICS


class TinySST2(SST2):
    """LaMoTO's SST-2 task on a dozen sentences (labels as GLUE's ClassLabel: LaMoTO stratifies its test split)."""

    def __init__(self):
        super().__init__()
        self.metric_config = NO_HUB_METRICS

    def _loadDatasetRaw(self):
        features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"]),
                             "idx": Value("int32")})

        def split(rows, offset):
            return Dataset.from_dict({"sentence": [s for s, _ in rows], "label": [y for _, y in rows],
                                      "idx": list(range(offset, offset + len(rows)))}, features=features)
        return DatasetDict({"train": split(SENTENCES[:10], 0), "validation": split(SENTENCES[10:], 10)})


class TinyDP(DP):
    """LaMoTO's DP task on a few UD sentences (its tag set is read from them, as from en_ewt)."""

    def _loadDataset(self):
        features = Features({"tokens": Sequence(Value("string")), "head": Sequence(Value("string")),
                             "deprel": Sequence(Value("string"))})

        def split(rows):
            return Dataset.from_dict({"tokens": [r[0] for r in rows], "head": [r[1] for r in rows],
                                      "deprel": [r[2] for r in rows]}, features=features)
        return DatasetDict({"train": split(UD_ROWS[:6]), "validation": split(UD_ROWS[6:7]),
                            "test": split(UD_ROWS[7:])})
