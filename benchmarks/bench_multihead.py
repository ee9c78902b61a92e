"""Benchmark several heads on one body (``ModelWithHeads``) against one head (a single-task model).

Prints, for a roberta-base-sized body (or ``--quick``: a tiny one):
  - forward+backward time of a ``ModelWithHeads`` with two heads (token classification and sequence classification,
    both labelled) over that of the single-task token classifier on the same body: the body dominates, goal <= 1.10;
  - parameter memory of the two-head model against body + heads counted separately, and against two single-task
    models (a body per head): the two-head model holds one body;
  - peak RSS growth of a training step of each.
Medians over interleaved rounds (which model goes first alternates).

    HF_HUB_OFFLINE=1 python benchmarks/bench_multihead.py [--quick] [--rounds 7] [--batch 8] [--seq 128]
"""
from __future__ import annotations

import argparse
import logging
import resource
import statistics
import time
from typing import Callable, Dict, List

import torch
from transformers import RobertaConfig

from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import SequenceClassificationHeadConfig, TokenClassificationHeadConfig
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import ForSingleLabelSequenceClassification, ForSingleLabelTokenClassification

log = logging.getLogger("bench_multihead")
FULL = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
QUICK = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)
GOAL = 1.10


def parameter_bytes(module: torch.nn.Module) -> int:
    """Bytes of the distinct parameters of ``module`` (shared ones once)."""
    return sum(p.numel() * p.element_size() for p in module.parameters())


def step_seconds(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny body, for a smoke test")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    torch.manual_seed(0)
    config = RobertaConfig(**(QUICK if args.quick else FULL), max_position_embeddings=args.seq + 2)
    body = RobertaBaseModel(config)
    token_config = TokenClassificationHeadConfig(num_labels=9)
    one_head = ForSingleLabelTokenClassification.fromModelAndHeadConfig(body, token_config).train()
    two_heads = ModelWithHeads.fromModelAndHeadConfigs(body, {
        "ner": (ForSingleLabelTokenClassification, token_config),
        "sentiment": (ForSingleLabelSequenceClassification, SequenceClassificationHeadConfig(num_labels=3)),
    }).train()
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, config.vocab_size, (args.batch, args.seq), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    ner = torch.randint(0, 9, (args.batch, args.seq), generator=generator)
    sentiment = torch.randint(0, 3, (args.batch,), generator=generator)

    def one() -> None:
        one_head.zero_grad(set_to_none=True)
        one_head(input_ids, attention_mask, labels=ner).loss.backward()

    def two() -> None:
        two_heads.zero_grad(set_to_none=True)
        two_heads(input_ids, attention_mask, labels={"ner": ner, "sentiment": sentiment}).loss.backward()

    one(), two()  # Warm-up.
    times: Dict[str, List[float]] = {"one head": [], "two heads": []}
    for round_ in range(args.rounds):
        order = [("one head", one), ("two heads", two)]
        for name, step in order if round_ % 2 == 0 else reversed(order):
            times[name].append(step_seconds(step))
    one_median, two_median = (statistics.median(times[k]) for k in ("one head", "two heads"))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    body_bytes = parameter_bytes(body)
    heads_bytes = sum(parameter_bytes(h) for h in two_heads.heads.values())
    single_sentiment = ForSingleLabelSequenceClassification.fromModelAndHeadConfig(
        RobertaBaseModel(config), SequenceClassificationHeadConfig(num_labels=3))
    per_task = parameter_bytes(one_head) + parameter_bytes(single_sentiment)

    print(f"\nModelWithHeads benchmark ({'quick' if args.quick else 'roberta-base size'}, batch {args.batch} x "
          f"{args.seq} tokens, {args.rounds} rounds, {torch.get_num_threads()} threads)")
    print(f"{'forward+backward, one head':<44}{one_median * 1000:10.1f} ms")
    print(f"{'forward+backward, two heads':<44}{two_median * 1000:10.1f} ms")
    verdict = "ok" if two_median / one_median <= GOAL else "OVER GOAL"
    print(f"{'ratio two heads / one head':<44}{two_median / one_median:10.3f}   (goal <= {GOAL}: {verdict})")
    print(f"{'parameters, two-head model':<44}{parameter_bytes(two_heads) / 2**20:10.1f} MiB")
    print(f"{'parameters, body + heads counted apart':<44}{(body_bytes + heads_bytes) / 2**20:10.1f} MiB")
    print(f"{'parameters, two single-task models':<44}{per_task / 2**20:10.1f} MiB")
    print(f"{'peak RSS after the timed steps':<44}{rss_before / 1024:10.1f} MiB")


if __name__ == "__main__":
    main()
