"""Local stand-ins for the hub checkpoints that the published ArchIt's test suite (``tst/`` of bauwenst/ArchIt) loads.

The published tests call ``from_pretrained("roberta-base")`` on the Hugging Face hub. There is no hub here
(``HF_HUB_OFFLINE=1``), so each test builds a tiny checkpoint of the same architecture into its ``tmp_path`` and passes
that folder instead of the hub id. What ``roberta-base`` on the hub is, and what the stand-in keeps of it:

- ``config.json`` of ``model_type`` "roberta" and a ``RobertaForMaskedLM`` checkpoint (keys ``roberta.*`` and
  ``lm_head.*``), written by ``RobertaForMaskedLM(config).save_pretrained``; padding id 1, ``<s>`` 0, ``</s>`` 2 and
  positions counted from the padding id + 1, as in roberta-base. Smaller: hidden size 32, 4 heads, intermediate size
  37; 12 layers as roberta-base (the tests index ``encoder.layer[4]`` and ``encoder.layer[5]``); 130 positions
  (128 tokens + 2, as roberta-base's 514 = 512 + 2); the vocabulary is the tokenizer's (300 entries).
- the tokenizer files of roberta-base's kind (``vocab.json``, ``merges.txt``, read by ``AutoTokenizer`` as a RoBERTa
  byte-level BPE tokenizer): a byte-level BPE trained with the ``tokenizers`` library on a few sentences, with
  RoBERTa's special tokens in RoBERTa's order (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>`` 4), and a
  ``tokenizer_config.json`` giving ``model_max_length`` 128 (roberta-base's 512, scaled like the positions).
"""
import json
from pathlib import Path

import torch
import transformers
from tokenizers import ByteLevelBPETokenizer

SEED = 0
ROBERTA_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as in roberta-base
TOKENIZER_VOCAB = 300
MODEL_MAX_LENGTH = 128
TRAINING_SENTENCES = [
    "This is a very long sentence that has been artificially constructed just for the sake of it.",
    "A much shorter sentence with padding.",
    "The quick brown fox jumps over the lazy dog.",
    "Dependency parsing finds the head of every word in a sentence.",
]


def tiny_roberta_config(vocab_size: int) -> transformers.RobertaConfig:
    return transformers.RobertaConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=12, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=MODEL_MAX_LENGTH + 2, type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=1, bos_token_id=0, eos_token_id=2,
    )


def save_tiny_roberta_tokenizer(directory: Path) -> int:
    """Train a tiny byte-level BPE and write it as roberta-base's tokenizer files; returns its vocabulary size."""
    tokenizer = ByteLevelBPETokenizer(add_prefix_space=True)
    tokenizer.train_from_iterator(TRAINING_SENTENCES * 10, vocab_size=TOKENIZER_VOCAB, min_frequency=1,
                                  special_tokens=ROBERTA_SPECIAL_TOKENS, show_progress=False)
    tokenizer.save_model(str(directory))  # vocab.json and merges.txt
    with open(Path(directory) / "tokenizer_config.json", "w") as handle:
        json.dump({"model_max_length": MODEL_MAX_LENGTH}, handle)
    return tokenizer.get_vocab_size()


def make_tiny_roberta_base(directory: Path) -> str:
    """A local stand-in for the hub's "roberta-base" (see the module docstring); returns the folder as a string, the
    way the published tests pass the hub id."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_size = save_tiny_roberta_tokenizer(directory)
    torch.manual_seed(SEED)
    model = transformers.RobertaForMaskedLM(tiny_roberta_config(vocab_size))
    model.save_pretrained(str(directory))
    return str(directory)
