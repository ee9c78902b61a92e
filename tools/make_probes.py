"""Write archit's probe checkpoints for ``nox -s report`` (``archit matrix --probes``): one tiny archit checkpoint per
task (on RoBERTa) and per base-model family the README names (a token classifier on each), built from a fixed seed, so
that every run writes the same weights. Prints nothing; writes ``OUT/<name>/`` and ``OUT/probes.json``.

    python tools/make_probes.py OUT
"""
import json
import sys
from pathlib import Path

import torch
import transformers

from archit.instantiation import basemodels, heads, tasks

VOCAB, HIDDEN, LAYERS, HEADS, INTERMEDIATE, POSITIONS = 100, 32, 2, 4, 64, 64
SEED = 0
COMMON = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=INTERMEDIATE)

# task -> its head config (the task table of the README)
TASKS = {
    "ForSingleLabelTokenClassification": lambda: heads.TokenClassificationHeadConfig(num_labels=3),
    "ForSingleLabelSequenceClassification": lambda: heads.SequenceClassificationHeadConfig(num_labels=3),
    "ForMultiLabelSequenceClassification": lambda: heads.SequenceClassificationHeadConfig(num_labels=3,
                                                                                           pooling="first"),
    "ForSequenceRegression": lambda: heads.SequenceClassificationHeadConfig(num_labels=1),
    "ForExtractiveQA": lambda: heads.ExtractiveQAHeadConfig(),
    "ForExtractiveAQA": lambda: heads.ExtractiveAQAHeadConfig(ua_loss_weight=0.5),
    "ForSingleAnswerMultipleChoice": lambda: heads.SequenceClassificationHeadConfig(num_labels=1),
    "ForMaskedLM": lambda: heads.MaskedLMHeadConfig(),
    "ForCausalLM": lambda: heads.CausalLMHeadConfig(),
    "ForDependencyParsing": lambda: heads.DependencyParsingHeadConfig(),
}

# family -> (archit base class, its tiny config); README: "Base models: RobertaBaseModel, BertBaseModel, ..."
FAMILIES = {
    "roberta": ("RobertaBaseModel", lambda: transformers.RobertaConfig(
        vocab_size=VOCAB, max_position_embeddings=POSITIONS, pad_token_id=1, **COMMON)),
    "bert": ("BertBaseModel", lambda: transformers.BertConfig(vocab_size=VOCAB, max_position_embeddings=POSITIONS,
                                                              **COMMON)),
    "gpt2": ("GPT2BaseModel", lambda: transformers.GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS,
                                                              n_head=HEADS, n_inner=INTERMEDIATE,
                                                              n_positions=POSITIONS, bos_token_id=VOCAB - 1,
                                                              eos_token_id=VOCAB - 1)),
    "deberta": ("DebertaBaseModel", lambda: transformers.DebertaConfig(
        vocab_size=VOCAB, max_position_embeddings=POSITIONS, relative_attention=True, position_biased_input=False,
        max_relative_positions=16, pos_att_type=["p2c", "c2p"], **COMMON)),
    "modernbert": ("ModernBertBaseModel", lambda: transformers.ModernBertConfig(
        vocab_size=VOCAB, max_position_embeddings=POSITIONS, global_attn_every_n_layers=2, local_attention=16,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, **COMMON)),
    "canine": ("CanineBaseModel", lambda: transformers.CanineConfig(
        max_position_embeddings=4 * POSITIONS, num_hash_functions=4, num_hash_buckets=64, downsampling_rate=2,
        **COMMON)),
    "llama": ("AutoBaseModel", lambda: transformers.LlamaConfig(
        vocab_size=VOCAB, max_position_embeddings=POSITIONS, num_key_value_heads=2, pad_token_id=0, **COMMON)),
}


SHORT = {"ForSingleLabelTokenClassification": "token", "ForSingleLabelSequenceClassification": "sequence",
         "ForMultiLabelSequenceClassification": "multilabel", "ForSequenceRegression": "regression",
         "ForExtractiveQA": "qa", "ForExtractiveAQA": "aqa", "ForSingleAnswerMultipleChoice": "choice",
         "ForMaskedLM": "mlm", "ForCausalLM": "clm", "ForDependencyParsing": "parsing"}


def probes():
    """(name, family, task) of every probe: each task on RoBERTa, and a token classifier on every other family."""
    yield from ((f"roberta-{SHORT[task]}", "roberta", task) for task in TASKS)
    yield from ((f"{family}-token", family, "ForSingleLabelTokenClassification")
                for family in FAMILIES if family != "roberta")


def write_probes(out: Path) -> list:
    manifest = []
    for name, family, task_name in probes():
        base_name, make_config = FAMILIES[family]
        torch.manual_seed(SEED)
        base = getattr(basemodels, base_name)(make_config())
        model = getattr(tasks, task_name).fromModelAndHeadConfig(base, TASKS[task_name]())
        model.save_pretrained(str(out / name))
        manifest.append({"name": name, "checkpoint": name, "base": base_name, "task": task_name})
    (out / "probes.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


if __name__ == "__main__":
    write_probes(Path(sys.argv[1]))
