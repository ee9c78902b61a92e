"""Benchmark generation: archit's ``ForCausalLM`` against transformers' ``AutoModelForCausalLM`` on one checkpoint.

A Llama of ~100M parameters (hidden 768, 12 layers, 12 heads, 4 key-value heads, intermediate 2048, vocabulary 32000,
tied embeddings) with seeded random weights is saved by transformers' ``save_pretrained`` into a temporary folder and
loaded by both sides with their defaults (float32, the release's default attention). Each side then generates greedily
``--new-tokens`` tokens (128; the end-of-sequence token is ignored, so every run generates them all) after a prompt of
``--prompt`` tokens, batch 1, with the key-value cache. One discarded warm-up run per side, then ``--rounds`` timed
runs per side, interleaved with alternating order; prints the medians, tokens per second and the ratio of the
medians archit/transformers next to the goal (<= 1.05). Both sides must generate the same tokens.

    HF_HUB_OFFLINE=1 python benchmarks/bench_generate.py [--quick] [--rounds 7] [--threads N] [--device cuda]
    HF_HUB_OFFLINE=1 python benchmarks/bench_generate.py --profile      # cProfile of archit's side, 30 costliest
"""
from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import statistics
import tempfile
import time
from typing import Callable, Dict, List

import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig

from archit.instantiation.basemodels import AutoBaseModel
from archit.instantiation.tasks import ForCausalLM

log = logging.getLogger("bench_generate")
FULL = dict(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
            intermediate_size=2048)
QUICK = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=128)
GOAL = 1.05


def make_checkpoint(folder: str, quick: bool) -> int:
    """The random Llama, saved by transformers; its parameter count."""
    torch.manual_seed(0)
    config = LlamaConfig(**(QUICK if quick else FULL), max_position_embeddings=1024, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def timed(run: Callable[[], torch.Tensor], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny Llama, for a smoke test")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="cProfile archit's generate once and print the top 30")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory(prefix="bench-generate-") as folder:
        parameters = make_checkpoint(folder, args.quick)
        models = {
            "transformers": AutoModelForCausalLM.from_pretrained(folder).to(device).eval(),
            "archit": ForCausalLM.from_pretrained(folder, AutoBaseModel).to(device).eval(),
        }
    vocab = (QUICK if args.quick else FULL)["vocab_size"]
    input_ids = torch.randint(3, vocab, (1, args.prompt), generator=torch.Generator().manual_seed(0)).to(device)
    kwargs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False, use_cache=True,
                  max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, pad_token_id=0)

    outputs = {name: model.generate(**kwargs) for name, model in models.items()}  # Warm-up.
    if not torch.equal(outputs["archit"], outputs["transformers"]):
        raise SystemExit("archit and transformers generated different tokens.")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(models["archit"].generate, **kwargs)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)

    times: Dict[str, List[float]] = {name: [] for name in models}
    for round_ in range(args.rounds):
        names = list(models) if round_ % 2 == 0 else list(reversed(models))
        for name in names:
            times[name].append(timed(lambda: models[name].generate(**kwargs), device))

    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["archit"] / medians["transformers"]
    print(f"\nGeneration benchmark: Llama of {parameters / 1e6:.0f}M parameters{' (quick)' if args.quick else ''}, "
          f"greedy, {args.new_tokens} new tokens after {args.prompt}, batch 1, with cache, {device}, "
          f"{torch.get_num_threads()} threads, transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{args.rounds} rounds")
    for name in ("transformers", "archit"):
        values = times[name]
        print(f"{name:<14}median {medians[name]:8.3f} s  ({args.new_tokens / medians[name]:7.1f} tokens/s)   "
              f"min {min(values):.3f}  max {max(values):.3f}")
    verdict = "ok" if ratio <= GOAL else "OVER GOAL"
    print(f"{'ratio archit / transformers':<28}{ratio:.3f}   (goal <= {GOAL}: {verdict})")


if __name__ == "__main__":
    main()
