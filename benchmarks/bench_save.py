"""Benchmark crash-consistent ``save_pretrained`` against the save it replaced, in one process, on one model.

The model is a roberta-base-sized ``ForSingleLabelTokenClassification`` (124M parameters, float32, ~500 MB; ``--quick``:
a tiny one). Each round times, in alternating order:

* **old**: the save as it was before crash-consistent saves (archit 442eb4a): ``config.json`` written in place, the old
  weight files removed, the new ones written under their final names, no fsync (reproduced below as ``save_in_place``,
  with the same helpers for the state dict, layout and shards);
* **new**: ``save_pretrained`` (temporary files written with their writeback started every 64 MB and fsynced in a
  background thread, the journal, renames, fsync of the folder; the replaced files are closed, which frees their
  blocks, in a background thread after it returns);
* **new, no checksum**: the same save without the SHA-256 checksums (archit 91b5c9c, before them): each weight file
  written as ``new`` writes it, but not hashed (reproduced below by ``unhashed``); the goal for the checksums is
  new / (new, no checksum) <= 1.10;
* **new, release waited** (info): the same, timed until that background thread has also freed the replaced files'
  blocks: what the save costs if that work is counted too;
* **old + fsync** (info): the old save followed by an fsync of every file it wrote and of the folder: what durability
  alone costs on this disk, whatever the write protocol.

Both write into the same folder again every round (a training run's periodic checkpoint; ``--fresh`` writes into a new
folder each time); before each timed save all dirty pages are written back, untimed (``settle``), as they are when
saves are minutes apart. Medians of ``--rounds`` rounds after one warm-up each; the ratio new/old is printed next to the goal
(<= 1.10). Timings on a shared machine vary: more rounds give steadier medians.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_save.py [--quick] [--rounds 7] [--shard-size 5GB] [--fresh]
"""
import argparse
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

import archit.loading.commits as commits
from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification
from archit.loading.files import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, weight_file_variant
from archit.loading.saving import _shard, _without_shared_duplicates, checkpoint_layout, parse_size
from archit.loading.writing import SafetensorsLayout, WeightWriter
from archit.loading.writing import tensor_nbytes as _nbytes

log = logging.getLogger("bench_save")
GOAL = 1.10
FULL = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            max_position_embeddings=514, type_vocab_size=1)
QUICK = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
             max_position_embeddings=64, type_vocab_size=1)


FOLDERS = {"old": "old", "new": "new", "old + fsync": "old-fsync", "new, release waited": "new-released",
           "new, no checksum": "new-unhashed"}


def _write_unhashed(writer: WeightWriter, name: str, tensors: dict, metadata=None) -> None:
    """``WeightWriter.safetensors`` as it was before checksums: the file written, nothing hashed."""
    writer.commit.write_chunks(name, SafetensorsLayout.of(tensors, metadata).chunks())


def unhashed(save) -> None:
    """Run ``save()`` with weight files written without their checksums."""
    hashed = WeightWriter.safetensors
    WeightWriter.safetensors = _write_unhashed
    try:
        save()
    finally:
        WeightWriter.safetensors = hashed


def save_in_place(model, save_directory: str, max_shard_size: str) -> list:
    """The save before crash-consistent saves (safetensors, no variant), as it was; returns the files it wrote."""
    os.makedirs(save_directory, exist_ok=True)
    model.config.to_json_file(os.path.join(save_directory, CONFIG_NAME))
    tensors = checkpoint_layout(model, _without_shared_duplicates(model.state_dict()))
    shards = _shard(tensors, parse_size(max_shard_size))
    for name in os.listdir(save_directory):
        if weight_file_variant(name) == (True, None) and os.path.isfile(os.path.join(save_directory, name)):
            os.remove(os.path.join(save_directory, name))
    stem, extension = SAFE_WEIGHTS_NAME.rsplit(".", 1)
    names = [SAFE_WEIGHTS_NAME] if len(shards) == 1 else \
        [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.{extension}" for i in range(len(shards))]
    for name, shard in zip(names, shards):
        save_file(shard, os.path.join(save_directory, name), metadata={"format": "pt"})
    written = [CONFIG_NAME, *names]
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(_nbytes(t) for t in tensors.values())},
                 "weight_map": {key: name for name, shard in zip(names, shards) for key in shard}}
        with open(os.path.join(save_directory, SAFE_WEIGHTS_INDEX_NAME), "w", encoding="utf-8") as handle:
            json.dump(index, handle, indent=2, sort_keys=True)
        written.append(SAFE_WEIGHTS_INDEX_NAME)
    return written


def fsync_all(directory: str, names: list) -> None:
    for name in [*names, "."]:
        fd = os.open(os.path.join(directory, name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def settle() -> None:
    """Untimed, before every timed save: write all dirty pages back (``os.sync()``), as the kernel has done when saves
    are minutes apart (it writes dirty pages back within ~30 s). Back to back, the old save would delete files whose
    data never left the page cache, which costs nothing (deleting a file on disk frees its blocks), and leave 500 MB of
    dirty pages whose writeback the next save, whichever it is, would wait for."""
    os.sync()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model, for a smoke test")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--shard-size", default="5GB", help="max_shard_size (default: one file, as roberta-base)")
    parser.add_argument("--fresh", action="store_true", help="save into a new folder every time")
    parser.add_argument("--workdir", default=None, help="where to save (default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    config = transformers.RobertaConfig(**(QUICK if args.quick else FULL))
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(RobertaBaseModel(config),
                                                                     TokenClassificationHeadConfig(num_labels=9)).eval()
    nbytes = sum(_nbytes(t) for t in model.state_dict().values())
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-save-"))
    workdir.mkdir(parents=True, exist_ok=True)

    def target(kind: str, round_: int) -> str:
        return str(workdir / (f"{kind}-{round_}" if args.fresh else kind))

    def old(round_: int) -> None:
        save_in_place(model, target("old", round_), args.shard_size)

    def old_fsync(round_: int) -> None:
        directory = target("old-fsync", round_)
        fsync_all(directory, save_in_place(model, directory, args.shard_size))

    def new(round_: int) -> None:
        model.save_pretrained(target("new", round_), max_shard_size=args.shard_size)

    def new_released(round_: int) -> None:
        model.save_pretrained(target("new-released", round_), max_shard_size=args.shard_size)
        if getattr(commits, "_releaser", None) is not None:  # Absent before archit held replaced files open.
            commits._releaser.submit(lambda: None).result()

    def new_unhashed(round_: int) -> None:
        unhashed(lambda: model.save_pretrained(target("new-unhashed", round_), max_shard_size=args.shard_size))

    cases = {"old": old, "new": new, "old + fsync": old_fsync, "new, release waited": new_released,
             "new, no checksum": new_unhashed}
    times = {name: [] for name in cases}
    try:
        for name, run in cases.items():  # Warm-up: allocations, imports, the folders' first files.
            run(-1)
        for round_ in range(args.rounds):
            order = list(cases) if round_ % 2 == 0 else list(reversed(cases))
            for name in order:
                settle()
                start = time.perf_counter()
                cases[name](round_)
                times[name].append(time.perf_counter() - start)
            if args.fresh:
                for name in cases:
                    shutil.rmtree(target(FOLDERS[name], round_), ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    log.info("model: %.0f MB, max_shard_size %s, %d rounds, %s folder, transformers %s, torch %s", nbytes / 1e6,
             args.shard_size, args.rounds, "a fresh" if args.fresh else "the same", transformers.__version__,
             torch.__version__)
    for name, values in times.items():
        log.info("  %-20s median %.3f s  (min %.3f, max %.3f)", name, medians[name], min(values), max(values))
    ratio = medians["new"] / medians["old"]
    log.info("ratio new/old: %.2f (goal <= %.2f: %s)", ratio, GOAL, "met" if ratio <= GOAL else "NOT met")
    ratio = medians["new"] / medians["new, no checksum"]
    log.info("ratio new/(new, no checksum): %.2f (goal <= %.2f: %s): the checksums cost %.3f s", ratio, GOAL,
             "met" if ratio <= GOAL else "NOT met", medians["new"] - medians["new, no checksum"])
    log.info("info: ratio (old + fsync)/old: %.2f, i.e. fsync alone costs %.3f s; new/(old + fsync): %.2f; "
             "(new, release waited)/old: %.2f", medians["old + fsync"] / medians["old"],
             medians["old + fsync"] - medians["old"], medians["new"] / medians["old + fsync"],
             medians["new, release waited"] / medians["old"])


if __name__ == "__main__":
    main()
