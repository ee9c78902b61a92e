"""Saves that die part-way (SIGKILL at instrumented file operations and after random delays, write errors from a file
size limit), saves racing each other and loads racing saves: the folder always loads as exactly the old or the new
model (every tensor bitwise, logits equal to those computed before), and files that are not the checkpoint's stay as
they were, byte for byte. Every save path: ``ModelWithHead.save_pretrained`` (archit's writer), ``BaseModel.
save_pretrained`` (transformers' writer, staged) and ``ModelWithHeads.saveHead``.

The models are a RoBERTa of ~44 MB (vocabulary 30000, hidden 256, 4 layers), saved in 4 MB shards (8 files) or as one
file. Children are forked from the test process (no second import of torch). The default run kills at a spread of
points; ``ARCHIT_THOROUGH=1`` (``nox -t fuzz``) kills at every file operation of every layout."""
import fcntl
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

import archit.loading.files as files
import archit.loading.writing as writing
from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import ForSingleLabelTokenClassification
from archit.loading.commits import JOURNAL_NAME, TEMP_PREFIX, read_consistently, resolve_local
from archit.loading.headfiles import read_head_files
from archit.loading.writing import WeightWriter

from tests.helpers import assert_same_outputs, make_inputs, perturb_, roberta_config

THOROUGH = os.environ.get("ARCHIT_THOROUGH") == "1"
FORK = multiprocessing.get_context("fork")
SHARDED, SINGLE = "4MB", "1GB"
# (old layout, new layout): shard counts that differ, sharded -> single, single -> sharded.
LAYOUTS = {"sharded-to-sharded": (SHARDED, "6MB"), "sharded-to-single": (SHARDED, SINGLE),
           "single-to-sharded": (SINGLE, SHARDED)}
FOREIGN = {"tokenizer.json": b'{"version": "1.0"}', "trainer_state.json": b'{"global_step": 7}\n',
           "optimizer.pt": os.urandom(4096), "README.md": b"# my model\n",
           "model.fp16.safetensors": b"not ours: another variant's weights"}

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks its saving processes")


def build_model(seed: int) -> ForSingleLabelTokenClassification:
    torch.manual_seed(seed)
    config = roberta_config(vocab_size=30000, hidden_size=256, num_hidden_layers=4, intermediate_size=1024)
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(RobertaBaseModel(config),
                                                                     TokenClassificationHeadConfig(num_labels=5))
    return perturb_(model, seed).eval()


class Expected:
    """A model's tensors and outputs (``outputs_of``), computed before any save."""

    def __init__(self, model):
        state = model if isinstance(model, dict) else model.state_dict()
        self.tensors = {k: v.clone() for k, v in state.items()}
        self.outputs = outputs_of(model)


def outputs_of(model):
    """Logits of a model with a head; the last hidden state of a base model; nothing of a head alone (a dict)."""
    if isinstance(model, dict):
        return None
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        if isinstance(model, RobertaBaseModel):
            return model(input_ids, attention_mask).last_hidden_state
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def head_tensors(model) -> dict:
    return {k: v.clone() for k, v in model.head.state_dict().items()}


class Kind:
    """One save path: what it saves of the old and the new model, and how the folder is read back."""

    def __init__(self, name, part, save, load):
        self.name, self.part, self._save, self._load = name, part, save, load

    def save(self, model, directory, shard_size) -> None:
        self._save(model, str(directory), shard_size)

    def which(self, directory: Path, expected) -> str:
        """Read the folder and say which model it holds, checking every tensor bitwise and the outputs; fail on a
        mix."""
        loaded = self._load(str(directory))
        state = loaded if isinstance(loaded, dict) else loaded.state_dict()
        for name, candidate in expected.items():
            if all(torch.equal(state[k], v) for k, v in candidate.tensors.items()):
                assert set(state) == set(candidate.tensors)
                if candidate.outputs is not None:
                    assert_same_outputs(outputs_of(loaded.eval()), candidate.outputs)
                return name
        differing = {name: sorted(k for k, v in c.tensors.items() if not torch.equal(state[k], v))[:5]
                     for name, c in expected.items()}
        raise AssertionError(f"{directory} reads as neither model; tensors differing from each: {differing}")


def save_head(model, directory, shard_size) -> None:
    ModelWithHeads.fromTaskModels({"tagger": model}).saveHead("tagger", directory)


KINDS = {
    "model": Kind("model", lambda model: model,
                  lambda model, directory, shards: model.save_pretrained(directory, max_shard_size=shards),
                  lambda directory: ForSingleLabelTokenClassification.from_pretrained(
                      directory, RobertaBaseModel, attn_implementation="eager")),
    "base": Kind("base", lambda model: model.model,
                 lambda model, directory, shards: model.model.save_pretrained(directory, max_shard_size=shards),
                 lambda directory: RobertaBaseModel.from_pretrained(directory, attn_implementation="eager")),
    "head": Kind("head", head_tensors, save_head, lambda directory: read_head_files(directory)[1]),
}


@pytest.fixture(scope="module")
def models():
    old, new = build_model(1), build_model(2)
    return {"old": old, "new": new,
            "expected": {kind: {"old": Expected(k.part(old)), "new": Expected(k.part(new))} for kind, k in KINDS.items()}}


def which_checkpoint(directory: Path, models, kind: str = "model") -> str:
    return KINDS[kind].which(directory, models["expected"][kind])


def write_foreign_files(directory: Path) -> None:
    for name, content in FOREIGN.items():
        (directory / name).write_bytes(content)


def assert_foreign_files_intact(directory: Path) -> None:
    for name, content in FOREIGN.items():
        assert (directory / name).read_bytes() == content, name


def prepared_folder(tmp_path: Path, models, old_shards: str, kind: str = "model") -> Path:
    directory = tmp_path / "ckpt"
    directory.mkdir()
    write_foreign_files(directory)
    KINDS[kind].save(models["old"], directory, old_shards)
    return directory


def run_child(target, *args, timeout: float = 60) -> int:
    child = FORK.Process(target=target, args=args)
    child.start()
    child.join(timeout)
    assert not child.is_alive(), "the saving child hung"
    return child.exitcode


# ---------------------------------------------------------------------------------------------------------------------
# Children.

def instrument_file_operations(stop_at, log_path, on_stop, torn=False):
    """Count this process's file operations (weight files written by archit's ``WeightWriter`` or safetensors'
    ``save_file``, fsync, replace, remove; in every thread) and call ``on_stop()`` when the ``stop_at``-th starts
    (``torn``: a weight file is written, then cut in half, first). Each completed operation is logged to
    ``log_path``."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    count = [0]

    def instrumented(name, original):
        def operation(*args, **kwargs):
            count[0] += 1
            if count[0] == stop_at:
                if torn and name in ("save_file", "write"):
                    original(*args, **kwargs)
                    path = args[1] if name == "save_file" else args[0].commit.temp_path_of(args[1])
                    os.truncate(path, os.path.getsize(path) // 2)
                on_stop()
            result = original(*args, **kwargs)
            target = args[1] if name == "replace" else args[0] if name == "remove" else ""
            os.write(log, f"{name} {os.path.basename(str(target))}\n".encode())
            return result
        return operation

    os.replace = instrumented("replace", os.replace)
    os.remove = instrumented("remove", os.remove)
    os.fsync = instrumented("fsync", os.fsync)
    writing.save_file = instrumented("save_file", writing.save_file)
    WeightWriter._write_with_digest = instrumented("write", WeightWriter._write_with_digest)
    return log


def save_killed_at(model, directory, shard_size, kill_at, log_path, torn, kind="model"):
    """Save, SIGKILLing this process when the ``kill_at``-th file operation starts (``instrument_file_operations``)."""
    log = instrument_file_operations(kill_at, log_path, lambda: os.kill(os.getpid(), signal.SIGKILL), torn)
    KINDS[kind].save(model, directory, shard_size)
    os.write(log, b"finished\n")


def save_paused_at(model, directory, shard_size, pause_at, log_path, paused, resume, kind="model"):
    """Save, pausing when the ``pause_at``-th file operation starts: ``paused`` is set, and the operation waits until
    the parent sets ``resume`` (a reader runs meanwhile, against exactly this state of the folder)."""
    def pause():
        paused.set()
        assert resume.wait(120), "the parent never resumed the save"
    log = instrument_file_operations(pause_at, log_path, pause)
    KINDS[kind].save(model, directory, shard_size)
    os.write(log, b"finished\n")
    paused.set()


def save_with_file_size_limit(model, directory, shard_size, limit):
    """Save with RLIMIT_FSIZE: a write beyond ``limit`` bytes fails with EFBIG (SIGXFSZ ignored). Exit code 3 when
    the save raised an OSError noting that the previous checkpoint is intact, 0 when it succeeded."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        model.save_pretrained(str(directory), max_shard_size=shard_size)
    except Exception as error:
        notes = " ".join(getattr(error, "__notes__", []))
        os._exit(3 if "previous checkpoint there (if any) is intact" in notes else 4)


def save_repeatedly(models, directory, rounds, shard_sizes):
    for i in range(rounds):
        models[i % 2].save_pretrained(str(directory), max_shard_size=shard_sizes[i % 2])


# ---------------------------------------------------------------------------------------------------------------------
# Tests.

def count_operations(models, tmp_path, old_shards, new_shards, kind="model"):
    """The file operations of one uninterrupted save of the new model over the old one (kill_at 0: none)."""
    directory = prepared_folder(tmp_path / "count", models, old_shards, kind)
    log_path = tmp_path / "count.log"
    assert run_child(save_killed_at, models["new"], directory, new_shards, 0, str(log_path), False, kind) == 0
    lines = log_path.read_text().splitlines()
    assert lines[-1] == "finished"
    return len(lines) - 1


def kill_points(total: int) -> list:
    if THOROUGH:
        return list(range(1, total + 2))
    rng = random.Random(total)
    return sorted({1, 2, total // 2, total - 3, total - 2, total - 1, total, total + 1, *rng.sample(range(1, total), 3)})


# Every layout for the model-with-head save; the base model's (transformers writes it) in one layout by default, every
# layout with ARCHIT_THOROUGH=1; the head alone has one file.
KILL_CASES = [*(("model", layout) for layout in sorted(LAYOUTS)),
              *(("base", layout) for layout in (sorted(LAYOUTS) if THOROUGH else ["sharded-to-single"])),
              ("head", "single-to-sharded")]


def temporary_files(directory: Path) -> list:
    return [name for name in os.listdir(directory) if name.startswith(TEMP_PREFIX)]


@pytest.mark.parametrize("kind, layout", KILL_CASES)
def test_killed_save_leaves_old_or_new(kind, layout, models, tmp_path):
    old_shards, new_shards = LAYOUTS[layout]
    (tmp_path / "count").mkdir()
    total = count_operations(models, tmp_path, old_shards, new_shards, kind)
    assert total >= 6, total  # each file written, fsynced and renamed, the journal written and renamed, ...
    seen = set()
    for kill_at in kill_points(total):
        for torn in ((False, True) if THOROUGH else (kill_at % 2 == 0,)):
            case = tmp_path / f"kill-{kill_at}-{torn}"
            case.mkdir()
            directory = prepared_folder(case, models, old_shards, kind)
            log_path = case / "ops.log"
            code = run_child(save_killed_at, models["new"], directory, new_shards, kill_at, str(log_path), torn, kind)
            done = log_path.read_text().splitlines() if log_path.exists() else []
            committed = f"replace {JOURNAL_NAME}" in done
            assert code == (0 if kill_at > total else -signal.SIGKILL), (kill_at, code)
            holds = which_checkpoint(directory, models, kind)
            assert holds == ("new" if committed else "old"), (kill_at, torn, done[-3:])
            seen.add(holds)
            assert not (directory / JOURNAL_NAME).exists()  # The load completed an interrupted commit ...
            assert not temporary_files(directory)  # ... and removed what a save killed before its commit left.
            assert_foreign_files_intact(directory)
            KINDS[kind].save(models["new"], directory, new_shards)
            assert not temporary_files(directory)
            assert which_checkpoint(directory, models, kind) == "new"
            assert_foreign_files_intact(directory)
            shutil.rmtree(case)  # ~50 MB a case: the thorough run makes hundreds.
    assert seen == {"old", "new"}


def test_killed_after_random_delays(models, tmp_path):
    old_shards, new_shards = LAYOUTS["sharded-to-sharded"]
    start = time.perf_counter()
    models["new"].save_pretrained(str(tmp_path / "timing"), max_shard_size=new_shards)
    duration = time.perf_counter() - start
    rng = random.Random(0)
    for i in range(12 if THOROUGH else 4):
        case = tmp_path / f"delay-{i}"
        case.mkdir()
        directory = prepared_folder(case, models, old_shards)
        child = FORK.Process(target=save_killed_at, args=(models["new"], directory, new_shards, 0,
                                                           str(case / "ops.log"), False))
        child.start()
        time.sleep(rng.uniform(0, 1.5 * duration))
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        which_checkpoint(directory, models)
        assert_foreign_files_intact(directory)
        shutil.rmtree(case)


@pytest.mark.parametrize("limit", [0, 100, 5_000, 1_000_000, 3_000_000, 20_000_000])
def test_write_error_keeps_old_checkpoint(limit, models, tmp_path):
    old_shards, new_shards = LAYOUTS["single-to-sharded"]
    directory = prepared_folder(tmp_path, models, old_shards)
    assert run_child(save_with_file_size_limit, models["new"], directory, new_shards, limit) == 3
    assert which_checkpoint(directory, models) == "old"
    assert not [p for p in os.listdir(directory) if p.startswith(TEMP_PREFIX)]  # The failed save removed its files.
    assert_foreign_files_intact(directory)


def test_foreign_files_survive_saves_of_every_layout(models, tmp_path):
    directory = prepared_folder(tmp_path, models, SHARDED)
    for shard_size in (SINGLE, SHARDED, "6MB", SINGLE):
        models["new"].save_pretrained(str(directory), max_shard_size=shard_size)
        assert which_checkpoint(directory, models) == "new"
        assert_foreign_files_intact(directory)
    assert sorted(os.listdir(directory)) == sorted({*FOREIGN, "config.json", "model.safetensors"})


def test_concurrent_saves_leave_one_checkpoint(models, tmp_path):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    write_foreign_files(directory)
    savers = [FORK.Process(target=save_repeatedly, args=((models["old"], models["new"]), directory, 4,
                                                         (SHARDED, SINGLE) if i else (SINGLE, SHARDED)))
              for i in range(2)]
    for saver in savers:
        saver.start()
    for saver in savers:
        saver.join(120)
        assert saver.exitcode == 0
    which_checkpoint(directory, models)
    assert_foreign_files_intact(directory)
    assert not [p for p in os.listdir(directory) if p.startswith(".archit-")]


def test_loads_during_saves_see_old_or_new(models, tmp_path):
    directory = prepared_folder(tmp_path, models, SHARDED)
    saver = FORK.Process(target=save_repeatedly, args=((models["new"], models["old"]), directory,
                                                       60 if THOROUGH else 16, ("6MB", SHARDED)))
    saver.start()
    seen = []
    try:
        while saver.is_alive():
            seen.append(which_checkpoint(directory, models))
    finally:
        saver.join(120)
    assert saver.exitcode == 0
    assert len(seen) >= 3, seen
    assert json.loads((directory / "config.json").read_text())["head_config"]["num_labels"] == 5


def _let_the_save_finish_after(where: str, child, resume, reached: list, monkeypatch) -> None:
    """Patch the load so that the paused save finishes (every rename of its roll-forward) right when the load has a
    temporary weight file's path in hand at ``where``: "resolve" (the name resolved through the journal, nothing opened
    yet), "safe_open" (the header checked under the temporary name, safetensors about to open it) or "mmap" (inside
    ``safe_open``: safetensors has read the file, torch's ``UntypedStorage.from_file`` is about to map it by name)."""
    def temporary_weights(path) -> bool:
        return path is not None and os.path.basename(path).startswith(TEMP_PREFIX) and path.endswith(".safetensors.part")

    def finish_the_save(path) -> None:
        if temporary_weights(path) and child.is_alive():
            reached.append(os.path.basename(path))
            resume.set()
            child.join(60)

    if where == "resolve":
        def resolve(folder, name, original=files.resolve_local):
            path = original(folder, name)
            finish_the_save(path)
            return path
        monkeypatch.setattr(files, "resolve_local", resolve)
    elif where == "safe_open":
        def safe_open(path, *args, original=files.safe_open, **kwargs):
            finish_the_save(path)
            return original(path, *args, **kwargs)
        monkeypatch.setattr(files, "safe_open", safe_open)
    else:  # Inside safe_open: safetensors has opened the file and checked it; torch maps it by name.
        def from_file(path, *args, original=torch.UntypedStorage.from_file, **kwargs):
            finish_the_save(path)
            return original(path, *args, **kwargs)
        monkeypatch.setattr(torch.UntypedStorage, "from_file", from_file)


@pytest.mark.parametrize("where", ["resolve", "safe_open", "mmap"])
def test_load_that_resolved_a_temporary_file_before_the_renames_sees_new(where, models, tmp_path, monkeypatch):
    """The interleavings the concurrent test above met about once in 16 busy runs: a load resolves a weight file's name
    through the journal to its temporary file, then the save renames every file (the inode, size and mtime stay, so the
    load's consistency check sees no change), then the load opens the temporary name: for the header check ("resolve"),
    with safetensors ("safe_open"), or inside safetensors, where torch maps the file by name ("mmap"). Deterministic:
    the saver pauses right after its commit point, and the load lets it finish at that point. Before the fixes the load
    raised "CheckpointError: ...model-00004-of-00005.safetensors.part: cannot be read: No such file" (the header
    check's FileNotFoundError, wrapped, was not retried under the final name) and, at "mmap", "...: safetensors cannot
    read it: unable to open file <...part> in read-only mode: No such file or directory (2)" (torch raises a
    RuntimeError there, which neither the opener's retry nor the load's recognised; met in CI's tests(tf4.57) run)."""
    old_shards, new_shards = LAYOUTS["sharded-to-sharded"]
    (tmp_path / "count").mkdir()
    total = count_operations(models, tmp_path, old_shards, new_shards)
    for pause_at in range(1, total + 1):
        case = tmp_path / f"pause-{pause_at}"
        case.mkdir()
        directory = prepared_folder(case, models, old_shards)
        log_path = case / "ops.log"
        paused, resume = FORK.Event(), FORK.Event()
        child = FORK.Process(target=save_paused_at, args=(models["new"], directory, new_shards, pause_at,
                                                           str(log_path), paused, resume))
        child.start()
        assert paused.wait(60), "the saving child never reached its pause point"
        if f"replace {JOURNAL_NAME}" not in log_path.read_text().splitlines():
            resume.set()  # Not committed yet: pause one operation later.
            child.join(60)
            continue
        reached: list = []
        _let_the_save_finish_after(where, child, resume, reached, monkeypatch)
        try:
            assert which_checkpoint(directory, models) == "new"
        finally:
            resume.set()
            child.join(60)
        assert child.exitcode == 0
        assert reached, f"the load had no temporary weight file in hand at {where}: the test missed the interleaving"
        assert not temporary_files(directory)
        return
    pytest.fail("the save never reached its commit point")


def test_a_failed_load_whose_temporary_file_was_renamed_loads_again(tmp_path):
    """The load's own net under every opener: a read that resolved a name to a save's temporary file and then failed,
    with any error, loads again when that name now resolves to another path (the file renamed to its final name: same
    inode, so the identity check alone sees no change). Built with a journal by hand (a save committed, not rolled
    forward), a read that renames the file itself before failing as torch does, and no ``open_settled``."""
    final, temp = "model.safetensors", f"{TEMP_PREFIX}0000-model.safetensors.part"
    (tmp_path / temp).write_bytes(b"new")
    (tmp_path / final).write_bytes(b"old")
    (tmp_path / JOURNAL_NAME).write_text(json.dumps({"save_id": "0000", "files": {final: temp}, "remove": []}))
    reads = []

    def read():
        path = resolve_local(str(tmp_path), final)
        reads.append(os.path.basename(path))
        if path.endswith(".part"):  # The save's roll-forward, between resolving and opening.
            os.replace(path, tmp_path / final)
            (tmp_path / JOURNAL_NAME).unlink()
            raise RuntimeError(f"unable to open file <{path}> in read-only mode: No such file or directory (2)")
        return Path(path).read_bytes()

    lock = os.open(tmp_path, os.O_RDONLY)  # A save "runs": the reader cannot roll the journal forward itself.
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        assert read_consistently(str(tmp_path), read) == b"new"
    finally:
        os.close(lock)
    assert reads == [temp, final]


def pause_points(total: int, layouts: int) -> list:
    """Every file operation of a save (and one past the end) in turn, as many rounds as it takes to make 200 paused
    loads in all (over ``layouts`` layouts) with ``ARCHIT_THOROUGH=1``; else one round over a spread of points."""
    if THOROUGH:
        rounds = -(-200 // (layouts * (total + 1)))
        return [point for _ in range(rounds) for point in range(1, total + 2)]
    return kill_points(total)


@pytest.mark.parametrize("kind, layout", [*(("model", layout) for layout in sorted(LAYOUTS)),
                                          ("base", "sharded-to-single"), ("head", "single-to-sharded")])
def test_load_while_save_is_paused_sees_old_or_new(kind, layout, models, tmp_path):
    """A deterministic version of the race above: the saver pauses at one file operation after another (before its
    commit point, between the commit and the renames, between two renames, ...) and a load runs against the folder in
    exactly that state. It must give the old model before the commit point and the new one from there on; before the
    fix a load between the commit and the first rename read a temporary safetensors shard with torch.load."""
    old_shards, new_shards = LAYOUTS[layout]
    (tmp_path / "count").mkdir()
    total = count_operations(models, tmp_path, old_shards, new_shards, kind)
    seen = set()
    for i, pause_at in enumerate(pause_points(total, len(LAYOUTS) if kind == "model" else 1)):
        case = tmp_path / f"pause-{i}"
        case.mkdir()
        directory = prepared_folder(case, models, old_shards, kind)
        log_path = case / "ops.log"
        paused, resume = FORK.Event(), FORK.Event()
        child = FORK.Process(target=save_paused_at, args=(models["new"], directory, new_shards, pause_at,
                                                           str(log_path), paused, resume, kind))
        child.start()
        try:
            assert paused.wait(60), "the saving child never reached its pause point"
            committed = f"replace {JOURNAL_NAME}" in log_path.read_text().splitlines()
            holds = which_checkpoint(directory, models, kind)
            assert holds == ("new" if committed else "old"), (pause_at, log_path.read_text().splitlines()[-3:])
            seen.add(holds)
        finally:
            resume.set()
            child.join(60)
        assert child.exitcode == 0
        assert which_checkpoint(directory, models, kind) == "new"
        assert_foreign_files_intact(directory)
        shutil.rmtree(case)
    assert seen == {"old", "new"}
