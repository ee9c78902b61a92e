"""Benchmark archit against plain transformers: checkpoint load (time, peak RSS), load + first forward, training step.

Cases (``--cases``, default all; ``--quick`` swaps each for a tiny model of the same architecture, a smoke test):

* ``roberta``: a roberta-base-sized ``RobertaForTokenClassification`` checkpoint (float32, one file, 9 labels), loaded
  by ``ForSingleLabelTokenClassification.from_pretrained(ckpt, RobertaBaseModel, head)`` and
  ``AutoModelForTokenClassification.from_pretrained(ckpt)``: both import its head. The only case with a training step.
* ``llama1b``: a bare ``LlamaModel`` (TinyLlama-1.1B's shape: hidden 2048, 22 layers, 32 heads, 4 kv heads,
  intermediate 5632, vocab 32000: 1.03B parameters, no LM head) in bfloat16, saved in 500 MB shards; loaded with a new
  9-label head in bfloat16 by ``ForSingleLabelTokenClassification.from_pretrained(ckpt, AutoBaseModel, head,
  dtype=torch.bfloat16)`` and ``AutoModelForTokenClassification.from_pretrained(ckpt, num_labels=9,
  dtype=torch.bfloat16)``.
* ``moe``: a bare ``MixtralModel`` (hidden 1024, 8 layers, 8 experts, 2 per token, intermediate 2816, vocab 32000:
  0.61B parameters) in bfloat16, 500 MB shards, its keys in the transformers 4.x per-expert layout
  (``layers.N.block_sparse_moe.experts.E.w1/w2/w3.weight``; transformers >= 5 writes that layout on save too). Loaded
  as ``llama1b``; on transformers 5 both loaders fuse the experts at load time.
* ``moe-small`` and ``moe1b``: ``moe`` at 0.2B (hidden 512, intermediate 1792, 3 shards of <= 140 MB) and at 1.04B
  (14 layers, 5 shards of <= 500 MB).

A bare base model checkpoint gives both loaders the same work: every base weight from the file, the head new.

Metrics (each measurement in a fresh subprocess, this same script with ``--child``; archit and transformers interleaved,
which one goes first alternating each round, after one discarded warm-up load per side):

* **load time**: the ``from_pretrained`` call alone, after the imports it needs.
* **peak RSS** (absolute, and minus the RSS right after the imports): ``ru_maxrss`` at the end of the load.
* **load + first forward**: from the start of the load to the end of one ``torch.no_grad()`` forward pass on a fixed
  seeded 1 x ``--forward-seq`` batch. Loaders may leave safetensors weights memory-mapped and unread after loading
  (archit does, and transformers on recent releases); the first forward then pays for reading them.
* info rows: minimum load time, the first forward alone, peak RSS after the forward and after reading every tensor.
* **train step** (``roberta`` only): AdamW steps on a ``--batch`` x ``--seq`` batch, 2 warm-up + ``--steps`` timed.

The parent prints, per case, medians and archit/transformers ratios next to the goal (<= 1.10; 1.05 for the training
step) and the target (<= 1.00), and writes all raw numbers to ``benchmarks/results/bench-<transformers>[...].json``.
A case that fails for one implementation reports that side's error and the others go on.
Checkpoints are made once per case and transformers version, under ``--workdir`` (``ckpt-<case>[-quick]-<version>``).

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_load.py [--quick] [--cases roberta,llama1b,moe,moe-small,moe1b]
        [--only load|train] [--attn eager] [--runs N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import json
import logging
import os
import platform
import pstats
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

log = logging.getLogger("bench_load")
RESULTS = Path(__file__).resolve().parent / "results"
IMPLS = ("archit", "transformers")
NUM_LABELS = 9
SEED = 0
INIT_STD = 0.02
# metric -> (goal, target) for the ratio archit/transformers.
THRESHOLDS = {"load_time": (1.10, 1.0), "peak_rss": (1.10, 1.0), "load_forward": (1.10, 1.0), "train_step": (1.05, 1.0)}


@dataclass(frozen=True)
class Case:
    """One checkpoint to load: its transformers family, model class, config (full and quick) and how it is saved."""
    name: str
    family: str  # transformers.models.<family>.modeling_<family>, imported before the timed load
    model_class: str  # the transformers class that is saved
    config_class: str
    archit_base: str  # the archit base model class (archit.instantiation.basemodels) of the load
    full: dict = field(default_factory=dict)  # config fields of the full-size model
    quick: dict = field(default_factory=dict)  # ... of its --quick stand-in
    dtype: Optional[str] = None  # dtype of the checkpoint and of both loads; None: float32, no dtype argument
    shard_size: Optional[str] = None  # max_shard_size of the full checkpoint (None: transformers' default)
    quick_shard_size: Optional[str] = None
    new_head: bool = True  # bare base checkpoint: both sides get a new NUM_LABELS head; else the checkpoint's head
    train: bool = False
    expected_keys: tuple = ()  # keys the saved checkpoint must hold (the layout under test)
    extra: dict = field(default_factory=dict)  # config fields for both sizes


CASES = {
    "roberta": Case(
        "roberta", family="roberta", model_class="RobertaForTokenClassification", config_class="RobertaConfig",
        archit_base="RobertaBaseModel", new_head=False, train=True,
        full=dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072),
        quick=dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
        extra=dict(max_position_embeddings=514, type_vocab_size=1, num_labels=NUM_LABELS)),
    "llama1b": Case(
        "llama1b", family="llama", model_class="LlamaModel", config_class="LlamaConfig", archit_base="AutoBaseModel",
        dtype="bfloat16", shard_size="500MB", quick_shard_size="100KB",
        full=dict(vocab_size=32000, hidden_size=2048, num_hidden_layers=22, num_attention_heads=32,
                  num_key_value_heads=4, intermediate_size=5632),
        quick=dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=128),
        extra=dict(max_position_embeddings=2048, tie_word_embeddings=False)),
    "moe": Case(
        "moe", family="mixtral", model_class="MixtralModel", config_class="MixtralConfig", archit_base="AutoBaseModel",
        dtype="bfloat16", shard_size="500MB", quick_shard_size="100KB",
        full=dict(vocab_size=32000, hidden_size=1024, num_hidden_layers=8, num_attention_heads=16,
                  num_key_value_heads=4, intermediate_size=2816, num_local_experts=8, num_experts_per_tok=2),
        quick=dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=128, num_local_experts=4, num_experts_per_tok=2),
        expected_keys=("layers.0.block_sparse_moe.experts.0.w1.weight", "layers.0.block_sparse_moe.experts.1.w3.weight",
                       "layers.0.block_sparse_moe.gate.weight"),
        extra=dict(max_position_embeddings=2048, tie_word_embeddings=False)),
    "moe-small": Case(
        "moe-small", family="mixtral", model_class="MixtralModel", config_class="MixtralConfig",
        archit_base="AutoBaseModel", dtype="bfloat16", shard_size="140MB", quick_shard_size="100KB",
        full=dict(vocab_size=32000, hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=4, intermediate_size=1792, num_local_experts=8, num_experts_per_tok=2),
        quick=dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=128, num_local_experts=4, num_experts_per_tok=2),
        expected_keys=("layers.0.block_sparse_moe.experts.0.w1.weight",),
        extra=dict(max_position_embeddings=2048, tie_word_embeddings=False)),
    "moe1b": Case(
        "moe1b", family="mixtral", model_class="MixtralModel", config_class="MixtralConfig", archit_base="AutoBaseModel",
        dtype="bfloat16", shard_size="500MB", quick_shard_size="100KB",
        full=dict(vocab_size=32000, hidden_size=1024, num_hidden_layers=14, num_attention_heads=16,
                  num_key_value_heads=4, intermediate_size=2816, num_local_experts=8, num_experts_per_tok=2),
        quick=dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=128, num_local_experts=4, num_experts_per_tok=2),
        expected_keys=("layers.0.block_sparse_moe.experts.0.w1.weight",),
        extra=dict(max_position_embeddings=2048, tie_word_embeddings=False)),
}


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


def _peak_rss_kib() -> int:
    """Peak resident set size of this process so far in KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _import_side(case: Case, impl: str) -> None:
    """Import what the load call needs (the family's modeling module on both sides), so only the load is timed."""
    modules = ["torch", "transformers", f"transformers.models.{case.family}.modeling_{case.family}"]
    for name in modules + (["archit.instantiation." + m for m in ("basemodels", "heads", "tasks")] * (impl == "archit")):
        importlib.import_module(name)


def _dtype_kwargs(case: Case) -> dict:
    """transformers' ``dtype=`` for the case's dtype (``torch_dtype=`` before 4.56, which lacks ``dtype``); empty for
    float32 cases, which pass none."""
    if case.dtype is None:
        return {}
    import torch
    import transformers
    from packaging.version import Version

    name = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    return {name: getattr(torch, case.dtype)}


def _load_model(case: Case, impl: str, ckpt: str, attn: Optional[str]) -> Any:
    """The load call under test."""
    import torch

    kwargs = {"attn_implementation": attn} if attn else {}
    if impl == "archit":
        from archit.instantiation import basemodels
        from archit.instantiation.heads import TokenClassificationHeadConfig
        from archit.instantiation.tasks import ForSingleLabelTokenClassification

        head = TokenClassificationHeadConfig(num_labels=NUM_LABELS)
        dtype = {"dtype": getattr(torch, case.dtype)} if case.dtype else {}  # archit takes dtype= on every release
        return ForSingleLabelTokenClassification.from_pretrained(ckpt, getattr(basemodels, case.archit_base), head,
                                                                 **kwargs, **dtype)
    from transformers import AutoModelForTokenClassification

    if case.new_head:
        kwargs = dict(kwargs, num_labels=NUM_LABELS, **_dtype_kwargs(case))
    return AutoModelForTokenClassification.from_pretrained(ckpt, **kwargs)


def _fill_random(model: Any, dtype: Any, seed: int) -> None:
    """Give every parameter of ``model`` (built on the meta device) real memory in ``dtype``: normal(0, INIT_STD)
    from one seeded generator, norm weights 1 and biases 0. Much faster than transformers' own initialisation."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    for name, param in list(model.named_parameters()):
        module_name, _, tensor_name = name.rpartition(".")
        module = model.get_submodule(module_name)
        value = torch.empty(param.shape, dtype=dtype)
        if tensor_name == "bias":
            value.zero_()
        elif param.dim() == 1 and "norm" in name.lower():
            value.fill_(1.0)
        else:
            value.normal_(0.0, INIT_STD, generator=gen)
        setattr(module, tensor_name, torch.nn.Parameter(value, requires_grad=param.requires_grad))


def _checkpoint_keys(ckpt: Path) -> list[str]:
    """The tensor names stored in a (possibly sharded) safetensors checkpoint."""
    index = ckpt / "model.safetensors.index.json"
    if index.exists():
        return list(json.loads(index.read_text())["weight_map"])
    from safetensors import safe_open

    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as handle:
        return list(handle.keys())


def child_make(case: Case, ckpt: Path, quick: bool) -> dict:
    """Create and save the case's seeded random checkpoint (into a temporary folder renamed when complete)."""
    import torch
    import transformers

    _seed_all(SEED)
    config = getattr(transformers, case.config_class)(**(case.quick if quick else case.full), **case.extra)
    tmp = ckpt.with_name(ckpt.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    if case.dtype is None:  # roberta: transformers' own initialisation in float32, as the case always did
        model = getattr(transformers, case.model_class)(config)
        model.save_pretrained(str(tmp), safe_serialization=True)
    else:
        from accelerate import init_empty_weights

        with init_empty_weights():  # parameters on meta, buffers (rotary frequencies) real
            model = getattr(transformers, case.model_class)(config)
        _fill_random(model, getattr(torch, case.dtype), SEED)
        model.eval()
        shard = case.quick_shard_size if quick else case.shard_size
        model.save_pretrained(str(tmp), **({"max_shard_size": shard} if shard else {}))
    keys = _checkpoint_keys(tmp)
    missing = [k for k in case.expected_keys if k not in keys]
    if missing:
        raise RuntimeError(f"transformers {transformers.__version__} saved {case.name} without the expected keys "
                           f"{missing} (saved e.g. {sorted(keys)[:8]})")
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)
    files = sorted(ckpt.glob("*.safetensors"))
    return {"params": sum(p.numel() for p in model.parameters()), "shards": len(files),
            "bytes": sum(f.stat().st_size for f in files), "keys": len(keys), "make_seconds": time.perf_counter() - t0}


def _forward_inputs(ckpt: str, seq: int) -> dict:
    """A fixed seeded 1 x ``seq`` batch of token ids within the checkpoint's vocabulary, all attended."""
    import torch

    gen = torch.Generator().manual_seed(SEED)
    vocab = json.loads((Path(ckpt) / "config.json").read_text())["vocab_size"]
    return {"input_ids": torch.randint(0, vocab, (1, seq), generator=gen),
            "attention_mask": torch.ones(1, seq, dtype=torch.long)}


def child_load(case: Case, impl: str, ckpt: str, attn: Optional[str], forward_seq: int,
               profile: Optional[Path] = None) -> dict:
    """Time one load call, then one no-grad forward pass, then a read of every tensor; report times and peak RSS (KiB)
    against the post-import baseline. With ``profile``, the load and the forward run under cProfile, stats to there."""
    import torch

    _import_side(case, impl)
    inputs = _forward_inputs(ckpt, forward_seq)
    baseline = _current_rss_kib()
    maxrss_before = _peak_rss_kib()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    t0 = time.perf_counter()
    model = _load_model(case, impl, ckpt, attn)
    seconds = time.perf_counter() - t0
    peak = _peak_rss_kib()
    with torch.no_grad():
        logits = model(**inputs).logits
    forward_end = time.perf_counter() - t0
    if profiler:
        profiler.disable()
        profiler.dump_stats(str(profile))
    peak_forward = _peak_rss_kib()
    # Informational: whatever the forward left unread (embedding rows not looked up) is read once, for the resident
    # cost of the whole model.
    for tensor in model.state_dict().values():
        tensor.detach().sum()
    core = getattr(model, "base_model", model)
    return {"seconds": seconds, "peak_rss_kib": peak, "baseline_rss_kib": baseline,
            "maxrss_after_import_kib": maxrss_before, "params": sum(p.numel() for p in model.parameters()),
            "forward_seconds": forward_end, "first_forward_seconds": forward_end - seconds,
            "forward_peak_rss_kib": peak_forward, "touched_seconds": time.perf_counter() - t0,
            "touched_peak_rss_kib": _peak_rss_kib(), "dtype": str(next(model.parameters()).dtype),
            "attn_implementation": getattr(core.config, "_attn_implementation", None),
            "logits_shape": list(logits.shape), "logits_finite": bool(torch.isfinite(logits).all())}


def child_train(case: Case, impl: str, ckpt: str, attn: Optional[str], steps: int, batch: int, seq: int) -> dict:
    """Time ``steps`` AdamW training steps (after 2 warm-up steps) on a fixed seeded random batch."""
    import torch

    _import_side(case, impl)
    _seed_all(SEED)
    model = _load_model(case, impl, ckpt, attn)
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
def checkpoint_dir(args: argparse.Namespace, case: Case) -> Path:
    """Where the case's checkpoint is cached: one per case, size and transformers version."""
    from importlib.metadata import version

    return args.workdir / f"ckpt-{case.name}{'-quick' * args.quick}-{version('transformers')}"


def _checkpoint_complete(ckpt: Path) -> bool:
    """Whether ``ckpt`` holds a config and its weights (single file or index)."""
    return (ckpt / "config.json").exists() and any((ckpt / name).exists() for name in
                                                   ("model.safetensors", "model.safetensors.index.json"))


def _others_running(samples: int = 5) -> int:
    """Most runnable processes besides this one over a few instantaneous /proc/loadavg samples (0 if unknown)."""
    path, seen = Path("/proc/loadavg"), 0
    for _ in range(samples if path.exists() else 0):
        seen = max(seen, int(path.read_text().split()[3].split("/")[0]) - 1)
        time.sleep(0.1)
    return seen


def _error_line(stderr: str) -> str:
    """The exception line of a child's traceback (the last line naming an Error or Exception), else its last line."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head:
            return line
    return lines[-1] if lines else "no output"


def run_child(args: argparse.Namespace, case: Case, mode: str, impl: str = "transformers") -> dict:
    """Run this script as ``--child mode`` in a fresh interpreter; return its JSON result, or ``{"error": line}``."""
    cmd = [sys.executable, __file__, "--child", mode, "--case", case.name, "--impl", impl, "--workdir",
           str(args.workdir), "--threads", str(args.threads), "--steps", str(args.steps), "--batch", str(args.batch),
           "--seq", str(args.seq), "--forward-seq", str(args.forward_seq)]
    cmd += ["--quick"] * args.quick + (["--attn", args.attn] if args.attn else []) + ["--profile"] * args.profile
    # Cache bytecode like a normal install would (this workplace sets PYTHONDONTWRITEBYTECODE, and lazily imported
    # modules such as torch._dynamo would otherwise be compiled from source inside the timed call).
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPYCACHEPREFIX=str(args.workdir / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    busy = _others_running()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        log.error("child %s %s/%s failed (rc=%s):\n%s", case.name, mode, impl, proc.returncode, proc.stderr[-4000:])
        return {"error": _error_line(proc.stderr), "rc": proc.returncode}
    if busy:
        log.warning("%d other runnable process(es) just before this run: timings are noisy%s", busy,
                    " (with --threads > 1 very much so: try --threads 1)" if args.threads > 1 else "")
    return dict(json.loads(lines[-1]), others_running_before=busy)


def interleaved(args: argparse.Namespace, case: Case, mode: str, rounds: int) -> tuple[dict, dict]:
    """Alternate archit/transformers children for ``rounds`` rounds, swapping who goes first each round. Returns the
    runs per side and the error per side that failed (its later runs are skipped)."""
    results: dict[str, list[dict]] = {impl: [] for impl in IMPLS}
    errors: dict[str, str] = {}
    for r in range(-args.warmup, rounds):  # negative rounds: warm-up (page cache, bytecode), discarded
        for impl in IMPLS if r % 2 == 0 else IMPLS[::-1]:
            if impl in errors:
                continue
            res = run_child(args, case, mode if r >= 0 else "load", impl)
            if "error" in res:
                errors[impl] = res["error"]
                log.error("%s: %s side failed (%s): skipping its %s runs", case.name, impl, res["error"], mode)
                continue
            log.info("%s %s %s %s: %s", case.name, mode, f"round {r + 1}" if r >= 0 else "warm-up", impl,
                     {k: v for k, v in res.items() if k != "step_seconds"})
            if r >= 0:
                results[impl].append(res)
    return results, errors


Row = tuple[str, dict, Optional[float], Optional[tuple[float, float]]]


def summarize(raw: dict[str, dict[str, list[dict]]]) -> list[Row]:
    """Rows of (metric, {impl: median or min}, ratio archit/transformers, (goal, target) or None) of one case."""
    def med(impl: str, mode: str, fn: Callable[[dict], Any], agg: Callable = statistics.median) -> Optional[float]:
        runs = raw.get(mode, {}).get(impl, [])
        vals = [v for r in runs for v in (fn(r) if isinstance(fn(r), list) else [fn(r)])]
        return agg(vals) if vals else None

    mib = 1024
    metrics = [("load time [s]", "load", lambda r: r["seconds"], THRESHOLDS["load_time"]),
               ("  info: load time, min [s]", "load", lambda r: r["seconds"], None, min),
               ("peak RSS [MiB]", "load", lambda r: r["peak_rss_kib"] / mib, THRESHOLDS["peak_rss"]),
               ("peak RSS - baseline [MiB]", "load", lambda r: (r["peak_rss_kib"] - r["baseline_rss_kib"]) / mib,
                THRESHOLDS["peak_rss"]),
               ("load + first forward [s]", "load", lambda r: r["forward_seconds"], THRESHOLDS["load_forward"]),
               ("  info: first forward [s]", "load", lambda r: r["first_forward_seconds"], None),
               ("  info: peak RSS-base, fwd [MiB]", "load",
                lambda r: (r["forward_peak_rss_kib"] - r["baseline_rss_kib"]) / mib, None),
               ("  info: peak RSS, all read [MiB]", "load", lambda r: r["touched_peak_rss_kib"] / mib, None),
               ("train step [s]", "train", lambda r: r["step_seconds"], THRESHOLDS["train_step"]),
               ("  info: train step, min [s]", "train", lambda r: r["step_seconds"], None, min),
               ("  info: first-step loss", "train", lambda r: r["losses"][0], None)]
    rows = []
    for name, mode, fn, thresholds, *agg in metrics:  # agg: median unless given (min is robust to other load)
        if mode in raw:
            a, t = (med(impl, mode, fn, *agg) for impl in IMPLS)
            rows.append((name, {"archit": a, "transformers": t}, a / t if a is not None and t else None, thresholds))
    return rows


def print_table(title: str, rows: list[Row], errors: dict[str, str]) -> None:
    """One case's report (stdout): medians, ratio, goal and target verdicts, then any side's error."""
    fmt = "{:<33} {:>10} {:>13} {:>7} {:>12} {:>12}"
    print(f"\n{title}")
    print(fmt.format("metric (median of runs)", "archit", "transformers", "ratio", "goal", "target"))
    for name, med, rat, thresholds in rows:
        cell = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        verdict = lambda limit: "-" if thresholds is None else (  # noqa: E731
            f"<={limit:.2f} " + ("n/a" if rat is None else "PASS" if rat <= limit else "FAIL"))
        print(fmt.format(name, cell(med["archit"]), cell(med["transformers"]), cell(rat),
                         verdict(thresholds[0] if thresholds else 0), verdict(thresholds[1] if thresholds else 0)))
    for impl, error in errors.items():
        print(f"  ERROR ({impl}): {error[:300]}")


def run_case(args: argparse.Namespace, case: Case) -> dict:
    """Make (or reuse) the case's checkpoint, then run its interleaved benchmarks; the case's part of the report."""
    start = time.perf_counter()
    ckpt = checkpoint_dir(args, case)
    report: dict[str, Any] = {"checkpoint": str(ckpt), "raw": {}, "errors": {}}
    if not _checkpoint_complete(ckpt):
        log.info("%s: creating checkpoint in %s", case.name, ckpt)
        made = run_child(args, case, "make")
        if "error" in made:
            report["errors"] = {impl: f"checkpoint creation failed: {made['error']}" for impl in IMPLS}
            return dict(report, seconds=time.perf_counter() - start)
        log.info("%s: checkpoint made: %s", case.name, made)
        report["made"] = made
    files = sorted(ckpt.glob("*.safetensors"))
    report["files"] = {"shards": len(files), "bytes": sum(f.stat().st_size for f in files)}
    if args.only in (None, "load"):
        report["raw"]["load"], errors = interleaved(args, case, "load", args.runs)
        report["errors"].update({impl: f"load: {e}" for impl, e in errors.items()})
    if case.train and args.only in (None, "train"):
        report["raw"]["train"], errors = interleaved(args, case, "train", args.train_rounds)
        for impl, e in errors.items():
            report["errors"].setdefault(impl, f"train: {e}")
    return dict(report, seconds=time.perf_counter() - start)


def _count(n: Optional[int]) -> str:
    """A parameter count with a K/M/B suffix ('?' if unknown)."""
    if n is None:
        return "?"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.3f}{suffix}"
    return str(n)


def _case_title(case: Case, report: dict, args: argparse.Namespace) -> str:
    """The header line of a case's table: checkpoint size, parameters, dtype, rounds and wall time."""
    runs = report["raw"].get("load", {})
    params = next((r["params"] for impl in IMPLS for r in runs.get(impl, [])), None)
    files = report.get("files", {})
    return (f"== {case.name}{' (quick)' * args.quick}: {case.model_class}, "
            f"{_count(params)} params (loaded, with head), {case.dtype or 'float32'}, "
            f"{files.get('shards', '?')} file(s), {files.get('bytes', 0) / 2 ** 20:.0f} MiB; {args.runs} load rounds"
            f"{f', {args.train_rounds} train rounds' if case.train and args.only != 'load' else ''}; "
            f"{report['seconds'] / 60:.1f} min")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Command-line options of the parent and (hidden) of the children."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated cases out of {', '.join(CASES)} "
                                                             f"(default: all)")
    p.add_argument("--runs", type=int, default=5, help="load-benchmark rounds (one archit + one transformers each)")
    p.add_argument("--train-rounds", type=int, default=3, help="training-benchmark rounds (roberta only)")
    p.add_argument("--warmup", type=int, default=1, help="discarded warm-up load rounds before each benchmark")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per round (after 2 warm-up steps)")
    p.add_argument("--batch", type=int, default=8, help="training batch size")
    p.add_argument("--seq", type=int, default=128, help="training sequence length")
    p.add_argument("--forward-seq", type=int, default=128, help="tokens of the 1-sequence batch of the first forward")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads in every child")
    p.add_argument("--attn", default=None, help="attn_implementation for both sides (default: transformers' own)")
    p.add_argument("--workdir", type=Path, default=RESULTS / "workdir", help="where checkpoints and bytecode are cached")
    p.add_argument("--only", choices=("load", "train"), default=None)
    p.add_argument("--quick", action="store_true", help="tiny model of each case (hidden 64, 2 layers, vocab 1000)")
    p.add_argument("--profile", action="store_true",
                   help="run load + first forward under cProfile: benchmarks/results/profile-*.pstats and .txt")
    p.add_argument("--child", choices=("make", "load", "train"), help=argparse.SUPPRESS)
    p.add_argument("--case", choices=tuple(CASES), default="roberta", help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=IMPLS, default="transformers", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}: choose from {list(CASES)}")
    return args


def child_main(args: argparse.Namespace) -> None:
    """Run one child measurement and print its JSON result as the last stdout line."""
    import torch
    import transformers

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    case = CASES[args.case]
    ckpt = checkpoint_dir(args, case)
    if args.child == "make":
        out = child_make(case, ckpt, args.quick)
    elif args.child == "load":
        profile = None
        if args.profile:
            profile = RESULTS / f"profile-{case.name}{'-quick' * args.quick}-{args.impl}-{transformers.__version__}.pstats"
        out = child_load(case, args.impl, str(ckpt), args.attn, args.forward_seq, profile)
        if profile:  # the binary stats, and the 30 costliest calls (cumulative) as text next to them
            with profile.with_suffix(".txt").open("w") as stream:
                pstats.Stats(str(profile), stream=stream).sort_stats("cumulative").print_stats(30)
            out["profile"] = str(profile.with_suffix(".txt"))
    else:
        out = child_train(case, args.impl, str(ckpt), args.attn, args.steps, args.batch, args.seq)
    print(json.dumps(out))


def main() -> None:
    """Parent: run the chosen cases one after another, print one table per case, write the raw numbers."""
    args = parse_args()
    if args.child:
        child_main(args)
        return

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    import torch
    import transformers

    start = time.perf_counter()
    cases = [CASES[name] for name in args.cases.split(",")]
    reports = {}
    for case in cases:
        reports[case.name] = run_case(args, case)
        log.info("%s done in %.1f min", case.name, reports[case.name]["seconds"] / 60)
    total = time.perf_counter() - start

    print(f"\ntransformers {transformers.__version__}, torch {torch.__version__}, threads {args.threads}, "
          f"attn {args.attn or 'default'}, first forward 1x{args.forward_seq}, train batch {args.batch}x{args.seq}, "
          f"{'quick' if args.quick else 'full'} models; total {total / 60:.1f} min")
    for case in cases:
        report = reports[case.name]
        report["summary"] = summarize(report["raw"])
        print_table(_case_title(case, report, args), report["summary"], report["errors"])

    suffix = "-quick" * args.quick + ("" if args.cases == ",".join(CASES) else "-" + args.cases.replace(",", "+")) \
        + (f"-{args.only}" if args.only else "") + "-profile" * args.profile
    out = RESULTS / f"bench-{transformers.__version__}{suffix}.json"
    for report in reports.values():
        report["summary"] = [{"metric": n, "medians": m, "ratio": r, "goal": t and t[0], "target": t and t[1]}
                             for n, m, r, t in report["summary"]]
    payload = {"transformers": transformers.__version__, "torch": torch.__version__,
               "python": platform.python_version(), "seconds": total,
               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "cases": reports}
    out.write_text(json.dumps(payload, indent=2))
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
