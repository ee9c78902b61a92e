"""The part of ``archit matrix`` that runs inside each release's environment: ``python -m archit.cli.matrix_worker
SPEC.json``. For every probe of the spec (a checkpoint, a base model class, a task, an optional head config) it loads the
checkpoint with archit in float32 (eager attention), runs one fixed input (seeded token ids within the vocabulary,
fixed length, eval mode), saves and reloads into a temporary folder and checks that the reload gives the same logits.

It writes ``OUT/<probe>.safetensors`` (the logits, for the parent to compare across releases) and ``OUT/result.json``:
one object per probe with ``ok``, ``error`` (the first line), ``era``, ``transformers``, ``torch``, ``load_seconds``,
``reload_max_abs_diff`` and the keys newly initialised / unused / converted by the load. The spec is
``{"out": DIR, "atol": X, "probes": [{"name", "checkpoint", "base", "task", "head_config"}]}``."""
import json
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type

import torch
from safetensors.torch import save_file

from .. import _compat as compat
from ..instantiation import tasks
from .classes import named_class

SEED = 0
BATCH, LENGTH, CHOICES, WORDS, SUBWORDS = 2, 16, 3, 8, 2
CHARACTERS = 256  # the ids fed to a base model without a vocabulary (CANINE reads Unicode code points)


def first_line(error: BaseException) -> str:
    """``TypeName: the first line of the message``."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def fixed_inputs(task: Type[Any], vocab_size: int) -> Dict[str, torch.Tensor]:
    """The one input every release gets: token ids from a generator seeded with ``SEED``, in the shape the task takes
    (``B x L``; ``B x choices x L`` for multiple choice; ``B x words x subwords`` for dependency parsing), no padding."""
    generator = torch.Generator().manual_seed(SEED)
    shape: Tuple[int, ...]
    mask_shape: Tuple[int, ...]
    if issubclass(task, tasks.ForSingleAnswerMultipleChoice):
        shape, mask_shape = (BATCH, CHOICES, LENGTH), (BATCH, CHOICES, LENGTH)
    elif issubclass(task, tasks.ForDependencyParsing):
        shape, mask_shape = (BATCH, WORDS, SUBWORDS), (BATCH, WORDS)
    else:
        shape, mask_shape = (BATCH, LENGTH), (BATCH, LENGTH)
    return {"input_ids": torch.randint(0, vocab_size, shape, generator=generator),
            "attention_mask": torch.ones(mask_shape, dtype=torch.long)}


def flat_logits(logits: Any, name: str = "logits") -> Dict[str, torch.Tensor]:
    """A model's logits (a tensor, or a tuple/dict of them) as named float32 tensors: ``logits``, ``logits.0``, ..."""
    if isinstance(logits, torch.Tensor):
        return {name: logits.detach().float().contiguous()}
    items = logits.items() if isinstance(logits, dict) else enumerate(logits or ())
    return {key: value for index, part in items for key, value in flat_logits(part, f"{name}.{index}").items()}


def max_abs_diff(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> float:
    """The largest ``|a - b|`` over the tensors of both; infinity when their names or shapes differ."""
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return float("inf")
    return max((float((a[k] - b[k]).abs().max()) if a[k].numel() else 0.0 for k in a), default=0.0)


def _vocab_size(model) -> int:
    config = model.config.base_model_config
    return getattr(config, "vocab_size", None) or CHARACTERS


def _load(task: Any, base: Type[Any], checkpoint: str, head_config: Any, trust_remote_code: bool) -> Any:
    return task.from_pretrained(checkpoint, base, head_config, dtype=torch.float32, attn_implementation="eager",
                                output_loading_info=True, trust_remote_code=trust_remote_code)


def _logits(model, inputs) -> Dict[str, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return flat_logits(model(**inputs).logits)


def run_probe(probe: Dict[str, Any], out: Path, atol: float) -> Dict[str, Any]:
    """Load, run, save, reload one probe; its result row (``ok`` False with the error's first line when any of it
    fails)."""
    row: Dict[str, Any] = {"probe": probe["name"], "ok": False, "error": None, "load_seconds": None,
                           "reload_max_abs_diff": None, "initialised": [], "unused": [], "converted": [],
                           "logits_file": None}
    try:
        task: Any = named_class(probe["task"], "task")
        base = named_class(probe["base"], "base")
        head_config = probe.get("head_config")
        head_config = task.headClass().configClass()(**head_config) if head_config is not None else None
        start = time.perf_counter()
        trust_remote_code = bool(probe.get("trust_remote_code"))
        model, info = _load(task, base, probe["checkpoint"], head_config, trust_remote_code)
        row["load_seconds"] = round(time.perf_counter() - start, 4)
        row["initialised"] = sorted(_key(entry) for entry in info.get("missing_keys", []))
        row["unused"] = sorted(_key(entry) for entry in info.get("unexpected_keys", []))
        row["converted"] = sorted(info.get("converted_keys") or {})
        inputs = fixed_inputs(task, _vocab_size(model))
        logits = _logits(model, inputs)
        with tempfile.TemporaryDirectory(prefix="archit-matrix-") as folder:
            model.save_pretrained(folder)
            reloaded, _ = _load(task, base, folder, None, trust_remote_code)
            row["reload_max_abs_diff"] = max_abs_diff(logits, _logits(reloaded, inputs))
        path = out / f"{probe['name']}.safetensors"
        save_file(logits, str(path))
        row["logits_file"] = path.name
        if row["reload_max_abs_diff"] > atol:
            raise ValueError(f"save and reload change the logits by up to {row['reload_max_abs_diff']:.3g}")
        row["ok"] = True
    except Exception as error:  # Every failure is a result here: the parent shows it in the matrix.
        row["error"] = first_line(error)
    return row


def _key(entry) -> str:
    return entry[0] if isinstance(entry, (tuple, list)) else str(entry)


def main(argv: Optional[List[str]] = None) -> int:
    spec = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    common = {"transformers": str(compat.TRANSFORMERS_VERSION), "torch": metadata.version("torch"), "era": compat.ERA}
    rows = [{**common, **run_probe(probe, out, spec["atol"])} for probe in spec["probes"]]
    (out / "result.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
