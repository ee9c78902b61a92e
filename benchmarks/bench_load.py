"""Benchmark archit against plain transformers: checkpoint load (time, peak RSS) and training-step time.

Every measurement runs in a fresh subprocess (this same script with ``--child``), archit and transformers
interleaved, and which one goes first alternates each round. The parent prints medians and archit/transformers
ratios next to their targets and writes all raw numbers to ``benchmarks/results/bench-<transformers>.json``.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_load.py [--quick] [--only load|train] [--attn eager]
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger("bench_load")
RESULTS = Path(__file__).resolve().parent / "results"
IMPLS = ("archit", "transformers")
NUM_LABELS = 9
SEED = 0
TARGETS = {"load_time": 1.10, "peak_rss": 1.10, "train_step": 1.05}
FULL = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
QUICK = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)


# ----------------------------------------------------------------------------------------------- child side
def _seed_all(seed: int) -> None:
    """Seed python, numpy (if loaded) and torch."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed)


def _current_rss_kib() -> int:
    """Resident set size right now in KiB (Linux /proc; falls back to the peak so far)."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _import_side(impl: str) -> None:
    """Import what the load call needs (roberta's modeling module on both sides), so only the load is timed."""
    modules = ["torch", "transformers", "transformers.models.roberta.modeling_roberta"]
    for name in modules + (["archit.instantiation." + m for m in ("basemodels", "heads", "tasks")] * (impl == "archit")):
        importlib.import_module(name)


def _load_model(impl: str, ckpt: str, attn: Optional[str]) -> Any:
    """The load call under test."""
    kwargs = {"attn_implementation": attn} if attn else {}
    if impl == "archit":
        from archit.instantiation.basemodels import RobertaBaseModel
        from archit.instantiation.heads import TokenClassificationHeadConfig
        from archit.instantiation.tasks import ForSingleLabelTokenClassification

        head = TokenClassificationHeadConfig(num_labels=NUM_LABELS)
        return ForSingleLabelTokenClassification.from_pretrained(ckpt, RobertaBaseModel, head, **kwargs)
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(ckpt, **kwargs)


def child_make(ckpt: Path, quick: bool) -> dict:
    """Create and save the seeded random token-classification checkpoint."""
    from transformers import RobertaConfig, RobertaForTokenClassification

    _seed_all(SEED)
    config = RobertaConfig(**(QUICK if quick else FULL), max_position_embeddings=514, type_vocab_size=1,
                           num_labels=NUM_LABELS)
    RobertaForTokenClassification(config).save_pretrained(str(ckpt), safe_serialization=True)
    return {}


def child_load(impl: str, ckpt: str, attn: Optional[str]) -> dict:
    """Time one load call; report time and peak RSS (KiB) against the post-import baseline."""
    _import_side(impl)
    baseline = _current_rss_kib()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    model = _load_model(impl, ckpt, attn)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Informational: transformers may leave weights lazily mmap-ed from the safetensors file; reading every tensor
    # once shows the resident cost that a first forward pass pays anyway.
    for tensor in model.state_dict().values():
        tensor.detach().sum()
    return {"seconds": seconds, "peak_rss_kib": peak, "baseline_rss_kib": baseline,
            "maxrss_after_import_kib": maxrss_before, "params": sum(p.numel() for p in model.parameters()),
            "touched_seconds": time.perf_counter() - t0,
            "touched_peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def child_train(impl: str, ckpt: str, attn: Optional[str], steps: int, batch: int, seq: int) -> dict:
    """Time ``steps`` AdamW training steps (after 2 warm-up steps) on a fixed seeded random batch."""
    import torch

    _import_side(impl)
    _seed_all(SEED)
    model = _load_model(impl, ckpt, attn)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    gen = torch.Generator().manual_seed(SEED)
    vocab = json.loads((Path(ckpt) / "config.json").read_text())["vocab_size"]
    inputs = {"input_ids": torch.randint(0, vocab, (batch, seq), generator=gen),
              "attention_mask": torch.ones(batch, seq, dtype=torch.long),
              "labels": torch.randint(0, NUM_LABELS, (batch, seq), generator=gen)}
    _seed_all(SEED)  # identical dropout streams for both sides
    times, losses = [], []
    for _ in range(2 + steps):
        t0 = time.perf_counter()
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    return {"step_seconds": times[2:], "losses": losses}


# ---------------------------------------------------------------------------------------------- parent side
def _others_running(samples: int = 5) -> int:
    """Most runnable processes besides this one over a few instantaneous /proc/loadavg samples (0 if unknown)."""
    path, seen = Path("/proc/loadavg"), 0
    for _ in range(samples if path.exists() else 0):
        seen = max(seen, int(path.read_text().split()[3].split("/")[0]) - 1)
        time.sleep(0.1)
    return seen


def run_child(args: argparse.Namespace, mode: str, impl: str = "transformers") -> Optional[dict]:
    """Run this script as ``--child mode`` in a fresh interpreter; return its JSON result or None on failure."""
    cmd = [sys.executable, __file__, "--child", mode, "--impl", impl, "--workdir", str(args.workdir),
           "--threads", str(args.threads), "--steps", str(args.steps), "--batch", str(args.batch), "--seq", str(args.seq)]
    cmd += ["--quick"] * args.quick + (["--attn", args.attn] if args.attn else [])
    # Cache bytecode like a normal install would (this workplace sets PYTHONDONTWRITEBYTECODE, and lazily imported
    # modules such as torch._dynamo would otherwise be compiled from source inside the timed call).
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPYCACHEPREFIX=str(args.workdir / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    busy = _others_running()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        log.error("child %s/%s failed (rc=%s):\n%s", mode, impl, proc.returncode, proc.stderr[-4000:])
        return None
    if busy:
        log.warning("%d other runnable process(es) just before this run: timings are noisy", busy)
    return dict(json.loads(lines[-1]), others_running_before=busy)


def interleaved(args: argparse.Namespace, mode: str, rounds: int) -> dict[str, list[dict]]:
    """Alternate archit/transformers children for ``rounds`` rounds, swapping who goes first each round."""
    results: dict[str, list[dict]] = {impl: [] for impl in IMPLS}
    broken: set[str] = set()
    for r in range(-args.warmup, rounds):  # negative rounds: warm-up (page cache, bytecode), discarded
        for impl in IMPLS if r % 2 == 0 else IMPLS[::-1]:
            if impl in broken:
                continue
            res = run_child(args, mode if r >= 0 else "load", impl)
            if res is None:
                broken.add(impl)
                log.error("%s side unavailable (traceback above): skipping its %s runs, no numbers reported for it",
                          impl, mode)
                continue
            log.info("%s %s %s: %s", mode, f"round {r + 1}" if r >= 0 else "warm-up", impl,
                     {k: v for k, v in res.items() if k != "step_seconds"})
            if r >= 0:
                results[impl].append(res)
    return results


def summarize(raw: dict[str, dict[str, list[dict]]]) -> list[tuple[str, dict, Optional[float], Optional[float]]]:
    """Rows of (metric, {impl: median or min}, ratio, target)."""
    def med(impl: str, mode: str, fn: Any, agg: Any = statistics.median) -> Optional[float]:
        runs = raw.get(mode, {}).get(impl, [])
        vals = [v for r in runs for v in (fn(r) if isinstance(fn(r), list) else [fn(r)])]
        return agg(vals) if vals else None

    metrics = [("load time [s]", "load", lambda r: r["seconds"], TARGETS["load_time"]),
               ("  info: load time, min [s]", "load", lambda r: r["seconds"], None, min),
               ("peak RSS [MiB]", "load", lambda r: r["peak_rss_kib"] / 1024, TARGETS["peak_rss"]),
               ("peak RSS - baseline [MiB]", "load", lambda r: (r["peak_rss_kib"] - r["baseline_rss_kib"]) / 1024,
                TARGETS["peak_rss"]),
               ("  info: load+read all [s]", "load", lambda r: r["touched_seconds"], None),
               ("  info: peak RSS, read [MiB]", "load", lambda r: r["touched_peak_rss_kib"] / 1024, None),
               ("train step [s]", "train", lambda r: r["step_seconds"], TARGETS["train_step"]),
               ("  info: train step, min [s]", "train", lambda r: r["step_seconds"], None, min),
               ("  info: first-step loss", "train", lambda r: r["losses"][0], None)]
    rows = []
    for name, mode, fn, target, *agg in metrics:  # agg: median unless given (min is robust to other load)
        if mode in raw:
            a, t = (med(impl, mode, fn, *agg) for impl in IMPLS)
            rows.append((name, {"archit": a, "transformers": t}, a / t if a is not None and t else None, target))
    return rows


def print_table(rows: list[tuple[str, dict, Optional[float], Optional[float]]]) -> None:
    """The final report (stdout)."""
    fmt = "{:<30} {:>11} {:>13} {:>8} {:>12}"
    print(fmt.format("metric (median of runs)", "archit", "transformers", "ratio", "target"))
    for name, med, rat, target in rows:
        cell = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        verdict = "n/a" if rat is None or target is None else ("PASS" if rat <= target else "FAIL")
        goal = "-" if target is None else f"<={target:.2f} {verdict}"
        print(fmt.format(name, cell(med["archit"]), cell(med["transformers"]), cell(rat), goal))


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="load-benchmark rounds (one archit + one transformers each)")
    p.add_argument("--train-rounds", type=int, default=3, help="training-benchmark rounds")
    p.add_argument("--warmup", type=int, default=1, help="discarded warm-up load rounds before each benchmark")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per round (after 2 warm-up steps)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads in every child")
    p.add_argument("--attn", default=None, help="attn_implementation for both sides (default: transformers' own)")
    p.add_argument("--workdir", type=Path, default=RESULTS / "workdir", help="where the checkpoint is cached")
    p.add_argument("--only", choices=("load", "train"), default=None)
    p.add_argument("--quick", action="store_true", help="tiny model (hidden 64, 2 layers, vocab 1000) for smoke tests")
    p.add_argument("--child", choices=("make", "load", "train"), help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=IMPLS, default="transformers", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    ckpt = args.workdir / ("roberta-tokcls-quick" if args.quick else "roberta-tokcls-base")
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        if args.child == "make":
            out = child_make(ckpt, args.quick)
        elif args.child == "load":
            out = child_load(args.impl, str(ckpt), args.attn)
        else:
            out = child_train(args.impl, str(ckpt), args.attn, args.steps, args.batch, args.seq)
        print(json.dumps(out))
        return

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not (ckpt / "model.safetensors").exists() or not (ckpt / "config.json").exists():
        log.info("creating checkpoint in %s", ckpt)
        if run_child(args, "make") is None:
            sys.exit("could not create the checkpoint")
    import torch
    import transformers

    raw: dict[str, dict[str, list[dict]]] = {}
    if args.only in (None, "load"):
        raw["load"] = interleaved(args, "load", args.runs)
    if args.only in (None, "train"):
        raw["train"] = interleaved(args, "train", args.train_rounds)
    rows = summarize(raw)
    print(f"\ntransformers {transformers.__version__}, torch {torch.__version__}, threads {args.threads}, "
          f"attn {args.attn or 'default'}, batch {args.batch}x{args.seq}, {'quick' if args.quick else 'full'} model")
    print_table(rows)

    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" * args.quick + (f"-{args.only}" if args.only else "")
    out = RESULTS / f"bench-{transformers.__version__}{suffix}.json"
    report = {"transformers": transformers.__version__, "torch": torch.__version__, "python": platform.python_version(),
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "summary": [{"metric": n, "medians": m, "ratio": r, "target": t} for n, m, r, t in rows], "raw": raw}
    out.write_text(json.dumps(report, indent=2))
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
