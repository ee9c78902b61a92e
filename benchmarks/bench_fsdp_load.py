"""Benchmark FSDP's RAM-efficient loading (issue 21): per rank of a 2-process gloo group, the peak resident memory and
its growth over ``from_pretrained`` of archit's loader against transformers', with ``ACCELERATE_USE_FSDP=true`` and
``FSDP_CPU_RAM_EFFICIENT_LOADING=true`` (what accelerate's ``cpu_ram_efficient_loading`` sets): local rank 0 reads
the checkpoint, the others receive it when accelerate prepares the model (not run here: the load is what is measured).

The checkpoint: a bare ``LlamaModel`` in TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32 heads, 4 kv heads,
intermediate 5632, vocab 32000: 1.03B parameters) in bfloat16, random weights, ``save_pretrained`` in 500 MB shards
into ``--workdir`` (made once per transformers version). Loaded with a new 9-label token-classification head in
bfloat16 by ``ForSingleLabelTokenClassification.from_pretrained(ckpt, AutoBaseModel, head, dtype=torch.bfloat16)``
and ``AutoModelForTokenClassification.from_pretrained(ckpt, num_labels=9, dtype=torch.bfloat16)``.

Each load runs in a fresh process group (``tests/ranks.py``: two spawned interpreters), archit and transformers
alternating, ``--runs`` rounds; per rank: **peak RSS - baseline** (``VmHWM``, reset after the imports, at the end of the
load, minus the RSS after the imports), **RSS growth** (resident memory after the load minus before) and whether the rank read the
weights (a slice of the embeddings equal to the file's). Both loaders leave safetensors tensors as views of the
memory-mapped file, resident only once read: **peak read - baseline** is the peak after reading one element per
page of every tensor the load left in memory (what a forward, or on rank 0 FSDP's broadcast, reads; on a rank that
received empty tensors, their never-written pages stay the kernel's shared zero page). Medians and archit/transformers ratios are printed; raw
numbers go to ``benchmarks/results/bench-fsdp-<transformers version>.json``. Needs ~2.1 GB of disk and, per rank, at
most ~2.5 GB of memory (transformers 5.x reads the whole checkpoint on both ranks). Not part of any test run.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_fsdp_load.py [--runs 2] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Dict, List

FSDP_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"}
SHAPE = dict(vocab_size=32000, hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
             intermediate_size=5632, max_position_embeddings=2048)
NUM_LABELS = 9


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


def _reset_peak() -> None:
    """Make the peak resident memory (``VmHWM``) the current one, so that it is the load's own peak: the imports', and
    an interpreter started by ``fork`` + ``exec``, do not count (``ru_maxrss`` would keep the parent's)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def make_checkpoint(folder: Path) -> None:
    """The bfloat16 LlamaModel, random weights, saved in 500 MB shards (once)."""
    import torch
    import transformers

    if (folder / "config.json").exists():
        return
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**SHAPE)
    with torch.device("meta"):
        model = transformers.LlamaModel(config)
    model = model.to(torch.bfloat16).to_empty(device="cpu")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02)
    model.save_pretrained(str(folder), max_shard_size="500MB")


def load_on_rank(rank: int, world_size: int, folder: str, side: str) -> Dict[str, Any]:
    """One rank's load: peak RSS over the baseline after imports, RSS growth, whether it read the weights."""
    import torch
    import transformers
    from packaging.version import Version
    from safetensors import safe_open

    from archit.instantiation.basemodels import AutoBaseModel
    from archit.instantiation.heads import TokenClassificationHeadConfig
    from archit.instantiation.tasks import ForSingleLabelTokenClassification

    dtype_keyword = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    _reset_peak()
    baseline = _status_mb("VmRSS")
    if side == "archit":
        model = ForSingleLabelTokenClassification.from_pretrained(
            folder, AutoBaseModel, TokenClassificationHeadConfig(num_labels=NUM_LABELS), dtype=torch.bfloat16)
        embeddings = model.base_model.base_model.embed_tokens.weight
    else:
        model = transformers.AutoModelForTokenClassification.from_pretrained(
            folder, num_labels=NUM_LABELS, **{dtype_keyword: torch.bfloat16})
        embeddings = model.base_model.embed_tokens.weight
    after, peak = _status_mb("VmRSS"), _status_mb("VmHWM")
    _reset_peak()
    with torch.no_grad():  # Every tensor read once, as a forward or FSDP's broadcast from rank 0 reads them.
        for tensor in model.state_dict().values():
            if tensor.device.type != "meta":
                tensor.view(-1)[:: max(1, 4096 // tensor.element_size())].sum()
    touched = _status_mb("VmHWM")
    index = json.loads((Path(folder) / "model.safetensors.index.json").read_text())["weight_map"]
    with safe_open(str(Path(folder) / index["embed_tokens.weight"]), framework="pt") as handle:
        stored = handle.get_slice("embed_tokens.weight")[:4]
    read = embeddings.device.type != "meta" and torch.equal(embeddings[:4].cpu(), stored)
    return {"peak_over_baseline_mb": peak - baseline, "growth_mb": after - baseline,
            "peak_read_over_baseline_mb": touched - baseline, "read": bool(read),
            "version": transformers.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/results/workdir"))
    arguments = parser.parse_args()
    import transformers

    from tests.ranks import run_ranks

    folder = arguments.workdir / f"ckpt-fsdp-llama1b-{transformers.__version__}"
    make_checkpoint(folder)
    results: Dict[str, List[List[Dict[str, Any]]]] = {"archit": [], "transformers": []}
    for run in range(arguments.runs):
        for side in (("archit", "transformers") if run % 2 == 0 else ("transformers", "archit")):
            results[side].append(run_ranks(load_on_rank, str(folder), side, env=FSDP_ENV, timeout=1800))
    print(f"transformers {transformers.__version__}: 2-rank FSDP RAM-efficient load of a 1.03B bfloat16 LlamaModel "
          f"({sum(f.stat().st_size for f in folder.glob('*.safetensors')) / 2**20:.0f} MB), medians of {arguments.runs}")
    print(f"{'rank':<5}{'metric':<28}{'archit':>10}{'transformers':>14}{'ratio':>8}")
    for rank in range(2):
        for metric in ("peak_over_baseline_mb", "growth_mb", "peak_read_over_baseline_mb"):
            a = statistics.median(r[rank][metric] for r in results["archit"])
            t = statistics.median(r[rank][metric] for r in results["transformers"])
            print(f"{rank:<5}{metric:<28}{a:>9.0f}M{t:>13.0f}M{a / t if t > 0 else float('nan'):>8.2f}")
        print(f"{rank:<5}{'read the weights':<28}{str(results['archit'][0][rank]['read']):>10}"
              f"{str(results['transformers'][0][rank]['read']):>14}")
    out = Path("benchmarks/results") / f"bench-fsdp-{transformers.__version__}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
