"""
LaMoTO on this archit: does the newest LaMoTO release, written against the published ArchIt, import and run its archit
calls unchanged? Run by ``nox -s "downstream(tf4.57)"`` (``nox -t downstream``: every minor of the session), which
installs LaMoTO, its companions and this checkout (editable) in one environment; by hand, in such an environment:

    python downstream/lamoto_smoke.py                  everything
    python downstream/lamoto_smoke.py dp --steps 5     the imports and one training (mbr, seqcls, dp)

0. Checks that ``archit`` is this checkout, not a published release.
1. Imports every module of the installed ``lamoto`` package that imports archit (found by reading the package's
   source, so a new LaMoTO release is covered as it is), printing which imported and which failed, and where.
2. Three few-step trainings on tiny checkpoints (``lamoto_tiny.py``: random 2-layer models saved with
   ``save_pretrained``, tokenisers that need no files), each through LaMoTO's own code as ``TaskTrainer.train``
   (lamoto/training/training.py) runs it: first ``TaskTrainer.train(..., smoke=True)`` itself (hyperparameters,
   ``CombinedConfig.from_pretrained``, tokeniser, dataset, collator, the HF-or-ArchIt decision: all but the model), then
   the rest step by step, each step naming the training.py lines it stands for (training.py itself cannot run on a
   CPU: it raises without CUDA and moves the model to "cuda"): the model as training.py decides to load it, LaMoTO's
   padding checks, ``hp.to_dict()`` (LaMoTO's lineages serialise hyperparameters through archit's
   ``RecursiveSerialisable``), a check that the model holds the checkpoint's weights, LaMoTO's ``ModelTrainer`` (a
   Trainer with ArchIt's logging mixins) with LaMoTO's optimiser, schedule, callbacks and collator, ``torchPrint`` and
   ``parameterCountBaseVsHead``, a few steps, and a reload of the checkpoint LaMoTO's callback saved, as the next
   LaMoTO run starting from it would load it:
     - mbr:    class-weighted token classification through LaMoTO's MBR task on CANINE: ``MBR(weighted_labels=True)``
               turns ``task.archit_class`` into ``ForSingleLabelTokenClassificationFactory``, whose ``from_pretrained``
               calls ``super(ModelWithHead, ForSingleLabelTokenClassification).from_pretrained(ckpt, base, head, loss,
               head_config=..., base_model_config_class=..., head_config_class=...)`` (lamoto/tasks/mbr.py); the
               model's loss must keep the class weights; then once more from scratch (a config instead of a
               checkpoint: ``CombinedConfig(base_model_config=...)`` and the factory's ``fromModelAndHeadConfig``);
     - seqcls: LaMoTO's SST-2 task from a transformers ``RobertaForSequenceClassification`` checkpoint, loaded the way
               training.py decides (``task._isHfCheckpointForThisTask(architectures[0])``): on the published ArchIt
               such a checkpoint goes to ``AutoModelForSequenceClassification``, and a different decision here fails;
               then once more through ``ForSingleLabelSequenceClassification.from_pretrained``
               (``load_hf_automodel_if_hf_checkpoint_and_matches_task=False``, LaMoTO's switch for that);
     - dp:     LaMoTO's DP task: ``ForDependencyParsing`` with a ``DependencyParsingHeadConfig`` on a RoBERTa
               checkpoint, fed examples x words x subwords batches by LaMoTO's ``DataCollatorForDependencyParsing``,
               then evaluated with LaMoTO's attachment metric (UAS/LAS) through its ``sneakyLogitTransform``.
   Each prints its losses, or the step that failed with the traceback's last lines.

Stand-ins, for what needs the hub or a GPU (nothing of archit or LaMoTO is patched, nor LaMoTO's code bypassed):
  - datasets: each task is subclassed only to return a tiny in-memory dataset from its ``_loadDataset``;
  - metrics: MBR's and SST-2's are ``evaluate.load(...)`` scripts from the hub, so those two tasks compute none; DP
    keeps its own;
  - the GPU: ``ModelTrainer.log`` (lamoto/training/auxiliary/backends.py) asks ``torch.cuda.get_device_name()``,
    which a CPU build of torch refuses: it is answered "cpu" while a trainer runs; the training arguments are
    training.py's without bf16, evaluation schedule and wandb.
Where LaMoTO itself does not fit the installed transformers, the script says so in a NOTE and goes around it, so that
the archit calls behind still run (none of these is archit's matter):
  - LaMoTO's ``ModelTrainer`` overrides ``_maybe_log_save_evaluate`` without the ``learning_rate`` argument the Trainer
    passes from transformers 4.5x on, and its ``log`` uses ``Trainer._nested_gather``, gone in 5.x: the ModelTrainer is
    still built and ArchIt's ``LoggingState`` computes its logs once, and transformers' Trainer runs the steps;
  - ``max_grad_norm=None`` (LaMoTO's default ``gradient_clipping_norm``): transformers 5's Trainer compares it with 0,
    so 0.0 (no clipping either) is passed there;
  - DP's special tokens: LaMoTO inserts them by handing the tokeniser nested lists (lamoto/preprocessing/wordlevel.py),
    which transformers 5 refuses: DP then runs with LaMoTO's ``add_special_tokens=False``;
  - tktkt, which every LaMoTO module imports, imports ``transformers.SpecialTokensMixin`` (tktkt/interfaces/
    huggingface.py), which transformers 5 removed: that one tktkt module is imported with a stand-in class lent to
    transformers for the moment (``tktkt_stand_in``; LaMoTO's bridge for tktkt's own tokenisers is not used here).

Exits 0 when everything imported and every training ran, 1 otherwise (after trying everything).
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import importlib.metadata as md
import io
import os
import shutil
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
TRAININGS = ("mbr", "seqcls", "dp")
PACKAGES = ("lamoto", "torch", "transformers", "datasets", "huggingface_hub", "tokenizers", "accelerate", "tktkt",
            "fiject", "modest-bauwenst", "supar_bauwenst", "evaluate", "wandb")


# ---------------------------------------------------------------------------------------------------------------------
# Reporting

@dataclass
class Outcome:
    """One import or one training: ``error`` is None when it worked."""
    name: str
    error: Optional[str] = None
    where: str = ""
    details: List[str] = field(default_factory=list)  # losses, metrics, notes
    tail: str = ""  # the traceback's last lines


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def where(exc: BaseException) -> str:
    """The innermost frame of the traceback that lies in lamoto/ or archit/ (``lamoto/tasks/mbr.py:79``), and the frame
    that raised, where that is another package's (``; raised in tktkt/interfaces/huggingface.py:13``)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = ""
    for frame in frames:
        parts = Path(frame.filename).parts
        for package in ("lamoto", "archit"):
            if package in parts:
                index = len(parts) - 1 - parts[::-1].index(package)
                ours = f"{'/'.join(parts[index:])}:{frame.lineno}"
    if not frames:
        return ours
    parts = Path(frames[-1].filename).parts
    anchor = next((i for i in range(len(parts) - 1, -1, -1) if parts[i] in ("site-packages", "lib")), -1)
    raised = f"{'/'.join(parts[anchor + 1:])}:{frames[-1].lineno}"
    if not ours:
        return raised
    return ours if raised.split(":")[0].endswith(ours.split(":")[0]) else f"{ours}; raised in {raised}"


def last_lines(exc: BaseException, n: int = 10) -> str:
    lines = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip().splitlines()
    return "\n".join("      | " + line for line in lines[-n:])


def banner(title: str) -> None:
    print(f"\n{'=' * 100}\n{title}\n{'=' * 100}", flush=True)


class Steps:
    """Runs the steps of one training in order, printing each; the first failure ends the training."""

    def __init__(self, outcome: Outcome):
        self.outcome = outcome

    def __call__(self, label: str, function: Callable, *args, **kwargs):
        print(f"  - {label}", flush=True)
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            self.outcome.error = f"{label}: {one_line(exc)}"
            self.outcome.where = where(exc)
            self.outcome.tail = last_lines(exc)
            raise

    def note(self, text: str) -> None:
        print(f"    {text}", flush=True)
        self.outcome.details.append(text)


# ---------------------------------------------------------------------------------------------------------------------
# 1. Imports

def tktkt_stand_in() -> Optional[str]:
    """tktkt (every LaMoTO module imports it) does ``from transformers import SpecialTokensMixin`` at the top of
    tktkt/interfaces/huggingface.py; transformers 5 removed that class. Where it is missing, that one tktkt module is
    imported with a stand-in class lent to transformers for the moment of its import (transformers keeps nothing of
    it), so that LaMoTO's modules import and the archit calls behind them can run. Returns the NOTE to print, or
    None."""
    import evaluate  # noqa: F401  Imported first: on transformers 5 it makes transformers' module object anew.
    import transformers

    module = sys.modules["transformers"]
    if hasattr(module, "SpecialTokensMixin") or "tktkt.interfaces.huggingface" in sys.modules:
        return None

    class SpecialTokensMixin:
        """Stand-in for transformers 4's class of that name (tktkt builds one only for its own tokenisers)."""
        SPECIAL_TOKENS_ATTRIBUTES = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                                     "mask_token", "additional_special_tokens"]

        def __init__(self, **kwargs):
            for key, value in kwargs.items():
                setattr(self, key, value)

    module.SpecialTokensMixin = SpecialTokensMixin
    try:
        importlib.import_module("tktkt.interfaces.huggingface")
    finally:
        del module.SpecialTokensMixin
    return (f"NOTE (tktkt and transformers {transformers.__version__}, not archit): tktkt imports "
            "transformers.SpecialTokensMixin (tktkt/interfaces/huggingface.py:13), which transformers 5 removed, and "
            "every LaMoTO module imports tktkt; that tktkt module was imported with a stand-in class, so that LaMoTO "
            "imports (LaMoTO's TktktToHuggingFace, for tktkt's own tokenisers, is not used here)")


def modules_importing_archit() -> tuple:
    """The modules of the installed lamoto that import archit (anywhere in the file: at the top or in a function), and
    those that only mention it in comments or docstrings."""
    import ast

    import lamoto
    root = Path(lamoto.__file__).parent
    importing, mentioning = [], []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if "archit" not in source:
            continue
        module = ".".join(("lamoto", *path.relative_to(root).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        imports = any(
            (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "archit" for a in node.names))
            or (isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "archit")
            for node in ast.walk(ast.parse(source))
        )
        (importing if imports else mentioning).append(module)
    return importing, mentioning


def import_one(module: str) -> dict:
    """Import one module; its outcome as a dictionary (the --import-one mode prints it as JSON)."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            importlib.import_module(module)
    except Exception as exc:
        return {"name": module, "error": one_line(exc), "where": where(exc)}
    return {"name": module, "error": None, "where": ""}


def check_imports() -> List[Outcome]:
    """The modules in one go, in this interpreter; once one fails, each of the rest in a fresh interpreter (a failed
    import leaves the modules it had imported half-way behind, which changes what the next import sees: a later import
    could pass, or fail, only because of the earlier failure)."""
    import json
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    banner("1. LaMoTO modules that import archit")
    importing, mentioning = modules_importing_archit()

    def fresh(module: str) -> Outcome:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--import-one", module],
                              capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            return Outcome(module, error=f"the interpreter exited with {done.returncode}: "
                                         f"{(done.stderr.strip().splitlines() or [''])[-1]}")
        return Outcome(**json.loads(lines[-1]))

    outcomes: List[Outcome] = []
    for index, module in enumerate(importing):
        outcomes.append(Outcome(**import_one(module)))
        if outcomes[-1].error:
            rest = importing[index + 1:]
            if rest:
                print(f"  ({module} failed: importing the other {len(rest)} each in a fresh interpreter)", flush=True)
                with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
                    outcomes += list(pool.map(fresh, rest))
            break
    for outcome in outcomes:
        status = "ok  " if outcome.error is None else "FAIL"
        print(f"  {status} {outcome.name}" + (f"\n         {outcome.error}  (at {outcome.where})" if outcome.error
                                              else ""), flush=True)
    if mentioning:
        print(f"  (mention archit only in comments or docstrings, not imported: {', '.join(mentioning)})")
    return outcomes


# ---------------------------------------------------------------------------------------------------------------------
# 2. Trainings, as lamoto/training/training.py (TaskTrainer.train) runs them

@contextlib.contextmanager
def cpu_device_name():
    """LaMoTO's ModelTrainer.log names the CUDA device in every log; a CPU build of torch raises there."""
    import torch
    with mock.patch.object(torch.cuda, "get_device_name", lambda *args, **kwargs: "cpu"):
        yield


def quiet(function: Callable, *args, **kwargs):
    """Run ``function`` with its prints collected; returns (result, number of printed lines)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        result = function(*args, **kwargs)
    return result, len(buffer.getvalue().splitlines())


def lamoto_smoke(step: Steps, task, hp) -> None:
    """LaMoTO's own TaskTrainer.train(smoke=True): everything of training.py but the model and the training."""
    from lamoto.training.training import TaskTrainer
    _, printed = quiet(step, "TaskTrainer().train(task, hp, smoke=True)  [LaMoTO's own code, training.py:53-458]",
                       TaskTrainer().train, task=task, hyperparameters=hp.copy(), smoke=True)
    step.note(f"LaMoTO smoke run passed ({printed} lines of LaMoTO output)")


def lamoto_load(step: Steps, task, hp) -> tuple:
    """training.py:139-266 as LaMoTO runs them, without the move to CUDA: the config through
    CombinedConfig.from_pretrained, the tokeniser, the dataset, the collator, the HF-or-ArchIt decision and the model,
    and LaMoTO's padding checks. Returns (model, prepared datasets, collator, whether the HF branch was taken)."""
    import torch
    import transformers
    from transformers import AutoTokenizer

    from archit.instantiation.abstracts import CombinedConfig

    step.note(step("hp.to_dict(), as LaMoTO's DictifyLineage writes it to JSON  [lineages.py:544; archit's "
                   "RecursiveSerialisable under LaMoTO's _fields_to_dictables]", serialise_hyperparameters, hp))
    transformers.set_seed(hp.seed)
    task.resetTemporaryFields()
    task.adjustHyperparameters(hp)  # training.py:141
    task._setHyperparameters(hp)
    checkpoint = hp.model_config_or_checkpoint
    if isinstance(checkpoint, str):
        model_config = step("CombinedConfig.from_pretrained(ckpt, head_config=..., base_model_config_class=...)  "
                            "[training.py:149]", CombinedConfig.from_pretrained, checkpoint,
                            head_config=hp.archit_head_config,
                            base_model_config_class=hp.archit_basemodel_class.configClass())
    else:
        model_config = step("CombinedConfig(base_model_config=<config>, head_config=..., base_model_config_class=...)  "
                            "[training.py:156]", CombinedConfig, base_model_config=checkpoint,
                            head_config=hp.archit_head_config,
                            base_model_config_class=hp.archit_basemodel_class.configClass())
    task._setModelConfig(model_config)
    tokenizer = step("AutoTokenizer.from_pretrained(..., add_prefix_space=True)  [training.py:169/177]",
                     AutoTokenizer.from_pretrained, hp.tokeniser or checkpoint, add_prefix_space=True)
    task._setTokenizer(tokenizer)
    if task.tokenizer.pad_token is None:  # training.py:184-186
        task.tokenizer.pad_token = task.tokenizer.eos_token
        task.model_config.base_model_config.pad_token_id = task.tokenizer.eos_token_id
    if not hp.init_weights and task.tokenizer.pad_token_id != task.model_config.base_model_config.pad_token_id:
        task.model_config.base_model_config.pad_token_id = task.tokenizer.pad_token_id  # training.py:191-193
    datasets = step("task.loadDataset(), task.prepareDataset(...), task.getCollator()  [training.py:197-208]",
                    load_and_prepare, task, hp.seed)
    collator = task.getCollator()
    task.automodel_args["torch_dtype"] = torch.float32  # training.py:212 (no bf16 on a CPU)

    architectures = step("task.model_config.architectures  [training.py:214]",
                         lambda: task.model_config.architectures)
    classname = architectures[0] if architectures is not None else ""
    decided_hf = step(f"task._isHfCheckpointForThisTask({classname!r})  [training.py:215, tasks/_core.py:174]",
                      lambda: bool(hp.init_weights and hp.load_hf_automodel_if_hf_checkpoint_and_matches_task
                                   and task._isHfCheckpointForThisTask(classname)))
    step.note(f"training.py's decision for a {classname or 'config'} checkpoint: "
              + ("transformers AutoModel (task.automodel_class)" if decided_hf else "ArchIt (task.archit_class)"))
    if decided_hf:
        model = step(f"{task.automodel_class.__name__}.from_pretrained(ckpt, **task.automodel_args)  "
                     "[training.py:236]", task.automodel_class.from_pretrained, checkpoint, **task.automodel_args)
    elif hp.init_weights:
        torch.set_default_dtype(task.automodel_args["torch_dtype"])
        model = step(f"task.archit_class.from_pretrained(ckpt, {hp.archit_basemodel_class.__name__}, head config)  "
                     "[training.py:223]", task.archit_class.from_pretrained, checkpoint, hp.archit_basemodel_class,
                     hp.archit_head_config)
    else:
        torch.set_default_dtype(task.automodel_args["torch_dtype"])
        model = step(f"task.archit_class.fromModelAndHeadConfig({hp.archit_basemodel_class.__name__}.from_config("
                     "task.model_config), head config)  [training.py:226]",
                     lambda: task.archit_class.fromModelAndHeadConfig(
                         hp.archit_basemodel_class.from_config(task.model_config), hp.archit_head_config))
    step(f"model ({type(model).__name__}): config._attn_implementation, dtype, pad token ids  "
         "[training.py:249-266]", check_padding, task, model)
    if hp.init_weights:
        step.note(step("the model holds the checkpoint's weights", check_weights, model, checkpoint))
    return model, datasets, collator, decided_hf


def serialise_hyperparameters(hp) -> str:
    import json
    serialised = hp.to_dict()
    if serialised.get("_hp_class") != type(hp).__name__ \
            or not isinstance(serialised.get("archit_basemodel_class"), str):
        raise RuntimeError(f"LaMoTO's _fields_to_dictables override was not used: {sorted(serialised)}")
    head = serialised.get("archit_head_config")
    if not isinstance(head, dict):
        raise RuntimeError(f"the head config was not turned into a dictionary: {head!r}")
    if not isinstance(hp.archit_basemodel_class, type):
        raise RuntimeError("hp.to_dict() changed the hyperparameters themselves (archit_basemodel_class is now "
                           f"{hp.archit_basemodel_class!r})")
    return f"hyperparameters as JSON: {len(json.dumps(serialised))} characters, head config {head}"


def load_and_prepare(task, seed: int):
    from lamoto.util.datasets import shuffleAndTruncate
    datasets = task.loadDataset()
    datasets["train"] = shuffleAndTruncate(datasets["train"], seed=seed)
    datasets["validation"] = shuffleAndTruncate(datasets["validation"], seed=seed)
    return quiet(task.prepareDataset, datasets)[0]


def checkpoint_tensors(checkpoint: str) -> dict:
    """Every tensor of a checkpoint folder's safetensors (or, without those, .bin) files, read with safetensors/torch
    themselves, not with archit."""
    import torch
    from safetensors.torch import load_file

    folder = Path(checkpoint)
    tensors = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(path)))
    if not tensors:
        for path in sorted(folder.glob("*.bin")):
            tensors.update(torch.load(str(path), map_location="cpu", weights_only=True))
    return tensors


def check_weights(model, checkpoint: str) -> str:
    """That the model holds the checkpoint's embedding matrices (the base model's weights were loaded, not left as
    initialised): each checkpoint tensor whose name has "embeddings" is compared with the model's tensor of the same
    name, or whose name ends with it (the checkpoint's, or without its first part: "roberta.embeddings..." is
    "model._core.embeddings..." in an ArchIt model)."""
    import torch

    state = model.state_dict()
    compared, different = 0, []
    for key, tensor in checkpoint_tensors(checkpoint).items():
        if "embeddings" not in key:
            continue
        candidates = {key, key.split(".", 1)[-1]}
        matches = [name for name in state if any(name == c or name.endswith("." + c) for c in candidates)]
        for name in matches[:1]:
            compared += 1
            ours = state[name].detach().cpu()
            if ours.shape != tensor.shape or not torch.equal(ours.to(tensor.dtype), tensor):
                different.append(f"{name} (checkpoint {key})")
    if not compared:
        raise RuntimeError(f"none of the checkpoint's embedding tensors has a counterpart in the "
                           f"{type(model).__name__}: {sorted(state)[:5]} ...")
    if different:
        raise RuntimeError(f"{len(different)} of {compared} embedding tensors differ from the checkpoint's, e.g. "
                           f"{different[0]}: the base model was not loaded")
    return f"{compared} embedding tensor(s) equal to the checkpoint's"


def check_padding(task, model) -> None:
    print(f"      attention: {model.config._attn_implementation}, dtype: {model.dtype}")
    pads = {"tokeniser": task.tokenizer.pad_token_id, "config": task.model_config.base_model_config.pad_token_id,
            "model": model.config.pad_token_id}
    if len(set(pads.values())) != 1:
        raise RuntimeError(f"Mismatch between padding tokens (LaMoTO raises here): {pads}")


def lamoto_train(step: Steps, task, hp, model, datasets, collator, steps: int, output: Path,
                 metrics: bool = False) -> Path:
    """training.py:279-539 on a CPU: LaMoTO's metrics (if asked), TrainingArguments as LaMoTO builds them (fixed
    steps, no bf16, no evaluation schedule, no wandb), its AdamW and constant schedule, its callbacks, its ModelTrainer,
    the architecture print-out and parameter counts, then training (and evaluation with LaMoTO's metrics). Returns the
    checkpoint LaMoTO's CheckpointLastModel callback saved."""
    import torch
    import transformers
    from lamoto.measuring import METRICS
    from lamoto.measuring._core import EvaluationEnvironment
    from lamoto.training.auxiliary.backends import ModelTrainer
    from lamoto.training.auxiliary.callbacks import (
        CheckpointLastModel,
        SaveTokeniserWithCheckpoints,
        StatefulTokeniserCallback,
    )
    from transformers import IntervalStrategy, Trainer, TrainingArguments

    from archit.util import parameterCountBaseVsHead, torchPrint

    env = EvaluationEnvironment(model=model, tokeniser=task.tokenizer, validation_dataset=datasets["validation"],
                                test_dataset=datasets.get("test"), hyperparameters=task.hyperparameters, trainer=None)
    task._setMetrics({name: METRICS.load(name, env) for name in task.metric_config.to_compute} if metrics else {})
    max_grad_norm = hp.gradient_clipping_norm
    if max_grad_norm is None and int(transformers.__version__.split(".")[0]) >= 5:
        max_grad_norm = 0.0
        step.note("NOTE (LaMoTO and this transformers, not archit): LaMoTO passes max_grad_norm=gradient_clipping_norm "
                  "(None by default: no clipping), which transformers 5's Trainer compares with 0; 0.0 (no clipping) "
                  "instead")
    checkpointing = hp.gradient_checkpointing_if_possible and model.supports_gradient_checkpointing  # training.py:352
    arguments = step("TrainingArguments(...)  [training.py:334]", TrainingArguments,
                     output_dir=str(output), max_steps=steps, max_grad_norm=max_grad_norm,
                     per_device_train_batch_size=hp.examples_per_device_batch, gradient_accumulation_steps=1,
                     gradient_checkpointing=checkpointing,
                     bf16=False, eval_strategy=IntervalStrategy.NO,
                     per_device_eval_batch_size=hp.examples_per_device_batch, eval_accumulation_steps=1,
                     save_strategy=IntervalStrategy.NO, save_total_limit=1, report_to=[],
                     logging_strategy=IntervalStrategy.STEPS, logging_steps=1, logging_first_step=True,
                     include_num_input_tokens_seen=True, remove_unused_columns=False, use_cpu=True, seed=hp.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp.learning_rate, weight_decay=hp.adamw_decay_rate,
                                  betas=(0.9, 0.999))
    scheduler = transformers.optimization.get_constant_schedule_with_warmup(optimizer=optimizer, num_warmup_steps=0)
    callbacks = [CheckpointLastModel(), SaveTokeniserWithCheckpoints(task.tokenizer), StatefulTokeniserCallback()]
    data = dict(train_dataset=datasets["train"], eval_dataset=datasets["validation"], data_collator=collator,
                compute_metrics=task._computeMetrics, preprocess_logits_for_metrics=task.sneakyLogitTransform)
    trainer = step("ModelTrainer(model, ...)  [training.py:461; backends.py:90-101: ArchIt's LoggingState, "
                   "ReportDiagnosticsMixin.registerLog]", ModelTrainer, model=model, args=arguments,
                   optimizers=(optimizer, scheduler), callbacks=callbacks, **data)
    mismatch = model_trainer_mismatch()
    if mismatch:
        step.note(f"NOTE (LaMoTO and this transformers, not archit): {mismatch}, so LaMoTO's ModelTrainer cannot "
                  f"train here; it is built, ArchIt's LoggingState computes its logs once, and transformers' Trainer "
                  f"runs the steps with LaMoTO's callbacks")
        if hasattr(trainer, "_nested_gather"):
            with cpu_device_name():
                step("ModelTrainer.log(...)  [backends.py:116: LoggingState.compute]", trainer.log, {"loss": 0.0})
        else:
            step("trainer._extra_log.compute(tensor_gathering_function=<one process: as is>, round_digits=None)  "
                 "[backends.py:116, without Trainer._nested_gather]", trainer._extra_log.compute,
                 tensor_gathering_function=lambda tensors: tensors, round_digits=None)
        trainer = step("Trainer(model, ...) with LaMoTO's arguments, optimiser and callbacks", Trainer, model=model,
                       args=arguments, optimizers=(optimizer, scheduler), callbacks=callbacks[:2], **data)
    env.trainer = trainer
    _, printed = step("torchPrint(model)  [training.py:487]", quiet, torchPrint, model)
    counts = step("parameterCountBaseVsHead(model)  [training.py:488]", parameterCountBaseVsHead, model)
    step.note(f"torchPrint: {printed} lines; parameters (trainable, all): base {counts[0]}, head {counts[1]}")

    with cpu_device_name(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = step(f"trainer.train()  [training.py:539], {steps} steps", trainer.train)
        losses = [round(entry["loss"], 4) for entry in trainer.state.log_history if "loss" in entry]
        step.note(f"losses per step: {losses}  (train_loss {result.training_loss:.4f})")
        if metrics:
            results = step("trainer.evaluate(validation)  [training.py:546], LaMoTO's metrics",
                           trainer.evaluate, datasets["validation"], metric_key_prefix="eval")
            step.note("evaluation: " + ", ".join(
                f"{k} {v:.4f}" for k, v in results.items()
                if isinstance(v, float) and not k.endswith(("runtime", "per_second", "epoch"))))
    saved = output / f"checkpoint-{trainer.state.global_step}"
    if not saved.is_dir():
        raise RuntimeError(f"LaMoTO's CheckpointLastModel saved no {saved.name}: {sorted(os.listdir(output))}")
    return saved


def model_trainer_mismatch() -> Optional[str]:
    """Where LaMoTO's ModelTrainer overrides a Trainer method without parameters this transformers' Trainer passes to
    it (``learning_rate`` to ``_maybe_log_save_evaluate`` from 4.5x on), or uses a Trainer method this transformers
    lacks (``_nested_gather``, gone in 5.x), what is missing; else None."""
    import inspect

    from lamoto.training.auxiliary.backends import ModelTrainer
    from transformers import Trainer

    missing = [] if hasattr(Trainer, "_nested_gather") else ["Trainer has no _nested_gather (ModelTrainer.log uses it)"]
    for name in ("log", "_maybe_log_save_evaluate"):
        if name not in vars(ModelTrainer) or not hasattr(Trainer, name):
            continue
        ours = inspect.signature(getattr(ModelTrainer, name)).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ours.values()):
            continue
        theirs = [p for p in inspect.signature(getattr(Trainer, name)).parameters.values()
                  if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
        missing += [f"ModelTrainer.{name}() lacks {p.name!r}" for p in theirs if p.name not in ours]
    return "; ".join(missing) or None


def lamoto_reload(step: Steps, task, hp, saved: Path, head_config) -> None:
    """Load the saved checkpoint as the next LaMoTO run starting from it would (training.py:149 and :223)."""
    from archit.instantiation.abstracts import CombinedConfig
    step("reload: CombinedConfig.from_pretrained(saved checkpoint, ...)  [training.py:149]",
         CombinedConfig.from_pretrained, str(saved), head_config=hp.archit_head_config,
         base_model_config_class=hp.archit_basemodel_class.configClass())
    model = step("reload: task.archit_class.from_pretrained(saved checkpoint, ...)  [training.py:223]",
                 task.archit_class.from_pretrained, str(saved), hp.archit_basemodel_class, head_config)
    step.note(f"reloaded as {type(model).__name__}: "
              + step("the reloaded model holds the saved weights", check_weights, model, str(saved)))


def small_hyperparameters(hp, checkpoint: str):
    """LaMoTO's defaults for the task, on a tiny local checkpoint and a batch that fits the tiny datasets."""
    hp.model_config_or_checkpoint = checkpoint
    hp.tokeniser = None  # training.py:177: the checkpoint's own tokeniser.
    hp.examples_per_effective_batch = hp.examples_per_device_batch = 4
    hp.learning_rate = 1e-3
    hp.effective_batches_warmup = 0
    hp.discard_artifacts = hp.discard_results = True
    hp.wandb_project = None
    return hp


def train_mbr(outcome: Outcome, checkpoints: Dict[str, str], TinyMBR, steps: int, folder: Path) -> None:
    from lamoto.tasks.mbr import ForSingleLabelTokenClassificationFactory

    step = Steps(outcome)
    task = step("MBR(morphologies=<tiny MoDeST dataset>, weighted_labels=True)  [tasks/mbr.py:118-146]", TinyMBR)
    if not isinstance(task.archit_class, ForSingleLabelTokenClassificationFactory):
        raise RuntimeError(f"MBR's archit_class is {task.archit_class!r}, not the class-weighted factory")
    weights = [round(float(w), 3) for w in task.archit_class.class_weights]
    step.note(f"class weights (inverse label frequencies): {weights}")
    hp = small_hyperparameters(step("MBR.getDefaultHyperparameters()  [tasks/mbr.py:206]",
                                    TinyMBR.getDefaultHyperparameters), checkpoints["canine"])
    lamoto_smoke(step, task, hp)
    model, datasets, collator, _ = lamoto_load(step, task, hp)
    loss = model.loss_function
    step.note(f"loss: {type(loss).__name__}, weight {[round(w, 3) for w in loss.weight.tolist()]}"
              if getattr(loss, "weight", None) is not None else f"loss: {type(loss).__name__} WITHOUT class weights")
    if getattr(loss, "weight", None) is None:
        raise RuntimeError("The model's loss lost MBR's class weights")
    saved = lamoto_train(step, task, hp, model, datasets, collator, steps, folder / "mbr")
    lamoto_reload(step, task, hp, saved, head_config=None)  # None: mbr.py:75 reads the head config from the checkpoint.

    print("  -- from scratch: a CanineConfig instead of a checkpoint, hp.init_weights = False (mbr.py:64-70)")
    from transformers import CanineConfig
    scratch = hp.copy()
    scratch.model_config_or_checkpoint = CanineConfig.from_pretrained(checkpoints["canine"])
    scratch.tokeniser = checkpoints["canine"]
    scratch.init_weights = False
    scratch.save_as = "tiny-canine-from-scratch"  # training.py's run name cannot come from a config.
    lamoto_smoke(step, task, scratch)
    model, datasets, collator, _ = lamoto_load(step, task, scratch)
    if getattr(model.loss_function, "weight", None) is None:
        raise RuntimeError("The model's loss lost MBR's class weights (fromModelAndHeadConfig)")
    lamoto_train(step, task, scratch, model, datasets, collator, steps, folder / "mbr-scratch")


def train_seqcls(outcome: Outcome, checkpoints: Dict[str, str], TinySST2, steps: int, folder: Path) -> None:
    from archit.instantiation.heads import SequenceClassificationHeadConfig

    step = Steps(outcome)
    task = step("SST2()  [tasks/glue/sst2.py]", TinySST2)
    hp = small_hyperparameters(task.getDefaultHyperparameters(), checkpoints["roberta-seqcls"])
    hp.archit_head_config = SequenceClassificationHeadConfig()
    lamoto_smoke(step, task, hp)
    model, datasets, collator, decided_hf = lamoto_load(step, task, hp)
    saved = lamoto_train(step, task, hp, model, datasets, collator, steps, folder / "seqcls-decided")
    if decided_hf:
        print("  -- once more through ArchIt: hp.load_hf_automodel_if_hf_checkpoint_and_matches_task = False")
        hp.load_hf_automodel_if_hf_checkpoint_and_matches_task = False
        model, datasets, collator, _ = lamoto_load(step, task, hp)
        saved = lamoto_train(step, task, hp, model, datasets, collator, steps, folder / "seqcls-archit")
    lamoto_reload(step, task, hp, saved, head_config=hp.archit_head_config)
    if not decided_hf:
        # On the published ArchIt, SequenceClassificationHead.hfEquivalentSuffix() is "ForSequenceClassification", so
        # LaMoTO loads a RobertaForSequenceClassification checkpoint with AutoModelForSequenceClassification.
        suffix = task.archit_class.headClass().hfEquivalentSuffix()
        outcome.error = ("decision: LaMoTO took the ArchIt branch for a RobertaForSequenceClassification checkpoint, "
                         "where on the published ArchIt it takes transformers' AutoModelForSequenceClassification "
                         f"(SequenceClassificationHead.hfEquivalentSuffix() is {suffix!r} here, "
                         "'ForSequenceClassification' there)")
        outcome.where = "lamoto/tasks/_core.py:174"
        step.note("FAIL " + outcome.error)


def train_dp(outcome: Outcome, checkpoints: Dict[str, str], TinyDP, steps: int, folder: Path) -> None:
    from lamoto.preprocessing.wordlevel import WordLevelPreprocessorWithDummies
    from transformers import AutoTokenizer

    from archit.instantiation.tasks import DependencyParsingHeadConfig

    step = Steps(outcome)
    task = step("DP()  [tasks/dp.py:94: the tag set from the dataset]", TinyDP)
    hp = small_hyperparameters(task.getDefaultHyperparameters(), checkpoints["roberta"])
    hp.archit_head_config = DependencyParsingHeadConfig(final_hidden_size_arcs=32, final_hidden_size_relations=16)
    try:  # LaMoTO's own preprocessor on one word, with special tokens.
        WordLevelPreprocessorWithDummies(AutoTokenizer.from_pretrained(checkpoints["roberta"]), max_tokens=32,
                                         add_specials=True, redirect_to_dummy_if_index_was_truncated=False) \
            .preprocess(["word"], {"labels_arcs": [0]}, {"labels_rels": [0]})
    except (TypeError, AttributeError) as exc:
        hp.add_special_tokens = False
        step.note(f"NOTE (LaMoTO and this transformers, not archit): LaMoTO's word-level special-token insertion "
                  f"fails ({one_line(exc)}, at {where(exc)}); DP runs with hp.add_special_tokens=False")
    lamoto_smoke(step, task, hp)
    model, datasets, collator, _ = lamoto_load(step, task, hp)
    batch = collator([datasets["train"][i] for i in range(2)])
    step.note(f"batch from LaMoTO's DataCollatorForDependencyParsing: input_ids {tuple(batch['input_ids'].shape)} "
              f"(examples x words x subwords), attention_mask {tuple(batch['attention_mask'].shape)}, labels "
              f"{[tuple(t.shape) for t in batch['labels']]}")
    saved = lamoto_train(step, task, hp, model, datasets, collator, steps, folder / "dp", metrics=True)
    lamoto_reload(step, task, hp, saved, head_config=hp.archit_head_config)


def run_trainings(names: List[str], steps: int, folder: Path) -> List[Outcome]:
    outcomes = []
    banner("2. Trainings")
    try:
        print("  building tiny checkpoints ...", flush=True)
        import lamoto_tiny  # Next to this script; imports LaMoTO.
        checkpoints, _ = quiet(lamoto_tiny.build_checkpoints, folder / "checkpoints")
        TinyMBR, TinySST2, TinyDP = lamoto_tiny.TinyMBR, lamoto_tiny.TinySST2, lamoto_tiny.TinyDP
    except Exception as exc:
        for name in names:
            outcomes.append(Outcome(name, error=f"setup: {one_line(exc)}", where=where(exc), tail=last_lines(exc)))
        print(f"  FAIL setup: {one_line(exc)}  (at {where(exc)})\n{last_lines(exc)}")
        return outcomes
    runners = {"mbr": (train_mbr, TinyMBR), "seqcls": (train_seqcls, TinySST2), "dp": (train_dp, TinyDP)}
    for name in names:
        function, task_class = runners[name]
        print(f"\n[{name}]", flush=True)
        outcome = Outcome(name)
        try:
            function(outcome, checkpoints, task_class, steps, folder)
        except Exception as exc:
            if outcome.error is None:  # Outside a step.
                outcome.error, outcome.where, outcome.tail = one_line(exc), where(exc), last_lines(exc)
            print(f"    FAIL {outcome.error}  (at {outcome.where})\n{outcome.tail}", flush=True)
        outcomes.append(outcome)
    return outcomes


# ---------------------------------------------------------------------------------------------------------------------

def header() -> Optional[str]:
    """Versions, and the check that ``archit`` is this checkout; returns an error when it is not."""
    banner("LaMoTO downstream smoke test")
    for name in PACKAGES:
        try:
            version = md.version(name)
        except md.PackageNotFoundError:
            version = "(not installed)"
        print(f"  {name:>16} {version}")
    import archit
    location = Path(archit.__file__).resolve()
    print(f"  {'archit':>16} {getattr(archit, '__version__', '?')} from {location}")
    if REPO / "archit" not in location.parents:
        return f"archit is imported from {location}, not from this checkout ({REPO / 'archit'})"
    return None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trainings", nargs="*", metavar="TRAINING",
                        help=f"which trainings to run, of {', '.join(TRAININGS)} (default: all)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per training (default 3)")
    parser.add_argument("--import-one", metavar="MODULE", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.import_one:
        import json
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
            tktkt_stand_in()  # As in the main run; a failure shows in the import itself.
        print(json.dumps(import_one(arguments.import_one)))
        return 0
    unknown = sorted(set(arguments.trainings) - set(TRAININGS))
    if unknown:
        parser.error(f"unknown trainings {unknown}; choose from {', '.join(TRAININGS)}")
    names = [name for name in TRAININGS if name in (arguments.trainings or TRAININGS)]

    os.environ.setdefault("WANDB_MODE", "disabled")
    warnings.filterwarnings("ignore", module="supar")  # Its padding helper warns about its own indexing on every batch.
    workdir = Path(tempfile.mkdtemp(prefix="lamoto-smoke-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)  # Checkpoints and LaMoTO's outputs: a few MB a run.
    os.chdir(workdir)  # LaMoTO, tktkt and fiject write next to the working directory.
    wrong_archit = header()
    print(f"  working directory: {workdir}")
    if wrong_archit:
        print(f"\nFAIL: {wrong_archit}")
        return 1

    try:
        stand_in = tktkt_stand_in()
    except Exception as exc:  # Then the imports below fail and say why.
        stand_in = f"(tktkt could not be imported with a stand-in either: {one_line(exc)})"
    if stand_in:
        print(f"\n{stand_in}")
    imports = check_imports()
    trainings = run_trainings(names, arguments.steps, workdir)

    banner("Summary")
    if stand_in:
        print(stand_in)
    failed_imports = [o for o in imports if o.error]
    print(f"imports: {len(imports) - len(failed_imports)} of {len(imports)} LaMoTO modules that import archit imported")
    for outcome in failed_imports:
        print(f"  FAIL {outcome.name}: {outcome.error}  (at {outcome.where})")
    print("trainings:")
    for outcome in trainings:
        print(f"  {'ok  ' if outcome.error is None else 'FAIL'} {outcome.name}"
              + (f": {outcome.error}  (at {outcome.where})" if outcome.error else ""))
        for detail in outcome.details:
            if detail.startswith(("losses", "evaluation", "NOTE", "training.py's decision")):
                print(f"         {detail}")
    failures = len(failed_imports) + sum(o.error is not None for o in trainings)
    print(f"\n{'FAILED' if failures else 'PASSED'}: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
