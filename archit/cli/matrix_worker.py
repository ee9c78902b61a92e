"""The part of ``archit matrix`` that runs inside each release's environment: ``python -m archit.cli.matrix_worker
SPEC.json``. For every probe of the spec (a checkpoint, a base model class, a task, an optional head config; or
``transformers_class``: transformers' own class instead of archit) and every mode it loads the checkpoint (``pinned``:
float32, eager attention; ``defaults``: no dtype and no attention implementation asked for, what a plain
``from_pretrained(checkpoint)`` gets on this release), runs one fixed input (seeded token ids within the vocabulary,
fixed length, eval mode) and, pinned, saves (into a temporary folder, or ``save_to/<probe>`` for ``--across-saves``) and
reloads and checks that the reload gives the same logits.

It writes ``OUT/<probe>.safetensors`` (``OUT/<probe>.defaults.safetensors``: the logits, for the parent to compare
across releases) and ``OUT/result.json``: one object per probe and mode with ``ok``, ``error`` (the first line),
``era``, ``transformers``, ``torch``, ``load_seconds``, ``reload_max_abs_diff``, ``loader``, ``transformers_class``,
``dtype``, ``attn_implementation`` (what the load chose), ``saved`` (into ``save_to``) and the keys newly initialised / unused / converted by the load.
The spec is ``{"out": DIR, "atol": X, "modes": ["pinned"[, "defaults"]], "save_to": DIR|null, "reload": true,
"probes": [{"name", "checkpoint", "base", "task", "head_config", "transformers_class"}]}``."""
import json
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type

import torch
import transformers
from safetensors.torch import save_file

from .. import _compat as compat
from ..instantiation import tasks
from .classes import named_class
from .matrix_report import DEFAULTS as DEFAULTS
from .matrix_report import PINNED as PINNED

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


AUTO = "auto"  # --transformers-class auto: the class the checkpoint's config.json names
_NOT_LOGITS = ("hidden_states", "attentions", "past_key_values", "cross_attentions")


class ArchitLoad:
    """archit's own load of a probe: its task class on its base model class, with its head config."""
    loader = "archit"

    def __init__(self, probe: Dict[str, Any]):
        task: Any = named_class(probe["task"], "task")
        self.task, self.base = task, named_class(probe["base"], "base")
        config = probe.get("head_config")
        self.head_config = task.headClass().configClass()(**config) if config is not None else None
        self.trust_remote_code = bool(probe.get("trust_remote_code"))
        self.class_name: Optional[str] = None

    def load(self, checkpoint: str, mode: str, original: bool) -> Tuple[Any, Dict[str, Any]]:
        """The model and its loading info; ``original``: the probe's checkpoint (its head config applies), not a save."""
        pinned = {"dtype": torch.float32, "attn_implementation": "eager"} if mode == PINNED else {}
        model, info = self.task.from_pretrained(checkpoint, self.base, self.head_config if original else None,
                                                output_loading_info=True, trust_remote_code=self.trust_remote_code,
                                                **pinned)
        return model, info

    def inputs(self, model: Any) -> Dict[str, torch.Tensor]:
        config = model.config.base_model_config
        return fixed_inputs(self.task, getattr(config, "vocab_size", None) or CHARACTERS)

    def logits(self, model: Any, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        model.eval()
        with torch.no_grad():
            return flat_logits(model(**inputs).logits)


class TransformersLoad:
    """transformers' own load of a probe: the class named (``--transformers-class NAME``, looked up in this release),
    or for ``auto`` the class the checkpoint's ``architectures`` names in this release, else the ``AutoModelFor...`` of
    its task (this release's auto mapping picks the model class)."""
    loader = "transformers"

    def __init__(self, probe: Dict[str, Any]):
        self.requested = probe["transformers_class"]
        self.trust_remote_code = bool(probe.get("trust_remote_code"))
        self.cls: Any = None
        self.class_name: Optional[str] = None

    def _resolve(self, checkpoint: str) -> Any:
        if self.requested != AUTO:
            found = getattr(transformers, self.requested, None)
            if not isinstance(found, type):
                raise ValueError(f"transformers {compat.TRANSFORMERS_VERSION} has no class {self.requested}")
            return found
        config = transformers.AutoConfig.from_pretrained(checkpoint, trust_remote_code=self.trust_remote_code)
        architectures = list(getattr(config, "architectures", None) or ())
        if not architectures:
            raise ValueError("the checkpoint's config.json names no architectures: give --transformers-class NAME")
        own = getattr(transformers, architectures[0], None)
        if isinstance(own, type):
            return own
        task = architectures[0][architectures[0].find("For"):] if "For" in architectures[0] else ""
        return getattr(transformers, f"AutoModel{task}", None) or transformers.AutoModel

    def load(self, checkpoint: str, mode: str, original: bool) -> Tuple[Any, Dict[str, Any]]:
        if self.cls is None:
            self.cls = self._resolve(checkpoint)
        dtype_keyword = "dtype" if compat.TRANSFORMERS_GE_4_56 else "torch_dtype"
        pinned = {dtype_keyword: torch.float32, "attn_implementation": "eager"} if mode == PINNED else {}
        model, info = self.cls.from_pretrained(checkpoint, output_loading_info=True,
                                               trust_remote_code=self.trust_remote_code, **pinned)
        self.class_name = type(model).__name__
        return model, info

    def inputs(self, model: Any) -> Dict[str, torch.Tensor]:
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        vocab_size = getattr(config, "vocab_size", None) or CHARACTERS
        generator = torch.Generator().manual_seed(SEED)
        shape = (BATCH, CHOICES, LENGTH) if type(model).__name__.endswith("ForMultipleChoice") else (BATCH, LENGTH)
        return {"input_ids": torch.randint(0, vocab_size, shape, generator=generator),
                "attention_mask": torch.ones(shape, dtype=torch.long)}

    def logits(self, model: Any, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Every tensor the model outputs but its hidden states, attentions and cache, by name (``logits``,
        ``start_logits``, ...), in float32."""
        model.eval()
        with torch.no_grad():
            output = model(**inputs)
        return {key: value for name, part in output.items() if name not in _NOT_LOGITS
                for key, value in flat_logits(part, name).items()}


def _attention(model: Any) -> Optional[str]:
    """The attention implementation the model runs (its base model's config's ``_attn_implementation``)."""
    configs = [getattr(model.config, "base_model_config", None), model.config]
    configs += [getattr(module, "config", None) for module in model.modules()]
    for config in configs:
        value = getattr(config, "_attn_implementation", None)
        if isinstance(value, str):
            return value
    return None


def _dtype(model: Any) -> Optional[str]:
    parameter = next(iter(model.parameters()), None)
    return str(parameter.dtype).replace("torch.", "") if parameter is not None else None


def file_name(probe: str) -> str:
    """A probe's name as one file or folder name: a title such as ``runs/ner/checkpoint-500`` or ``org/name`` has its
    separators spelled ``--``, as the hub's cache spells ``org/name``."""
    return probe.replace("/", "--").replace("\\", "--")


def run_probe(probe: Dict[str, Any], out: Path, atol: float, mode: str = PINNED, save_to: Optional[Path] = None,
              reload: bool = True) -> Dict[str, Any]:
    """Load and run one probe in ``mode`` (``pinned``: float32, eager attention; ``defaults``: what the release does
    unasked); pinned, also save (into ``save_to`` when given, archit's or transformers' own ``save_pretrained``) and,
    with ``reload``, load that save again and compare. Its result row (``ok`` False with the error's first line when
    any of it fails)."""
    loading: Any = TransformersLoad if probe.get("transformers_class") else ArchitLoad
    row: Dict[str, Any] = {"probe": probe["name"], "mode": mode, "ok": False, "error": None, "load_seconds": None,
                           "reload_max_abs_diff": None, "initialised": [], "unused": [], "converted": [],
                           "logits_file": None, "loader": loading.loader, "transformers_class": None, "dtype": None,
                           "attn_implementation": None, "saved": False}
    try:
        load = loading(probe)
        start = time.perf_counter()
        model, info = load.load(probe["checkpoint"], mode, original=True)
        row["load_seconds"] = round(time.perf_counter() - start, 4)
        row["transformers_class"], row["dtype"], row["attn_implementation"] = \
            load.class_name, _dtype(model), _attention(model)
        row["initialised"] = sorted(_key(entry) for entry in info.get("missing_keys", []))
        row["unused"] = sorted(_key(entry) for entry in info.get("unexpected_keys", []))
        row["converted"] = sorted(info.get("converted_keys") or {})
        inputs = load.inputs(model)
        logits = load.logits(model, inputs)
        stem = file_name(probe["name"])
        path = out / (f"{stem}.safetensors" if mode == PINNED else f"{stem}.{mode}.safetensors")
        save_file(logits, str(path))
        row["logits_file"] = path.name
        if mode == PINNED and (reload or save_to is not None):
            with tempfile.TemporaryDirectory(prefix="archit-matrix-") as scratch:
                folder = save_to / file_name(probe["name"]) if save_to is not None else Path(scratch)
                if save_to is not None:
                    shutil.rmtree(folder, ignore_errors=True)
                    folder.mkdir(parents=True)
                model.save_pretrained(str(folder))
                row["saved"] = save_to is not None
                if reload:
                    reloaded, _ = load.load(str(folder), mode, original=False)
                    row["reload_max_abs_diff"] = max_abs_diff(logits, load.logits(reloaded, inputs))
        if row["reload_max_abs_diff"] is not None and row["reload_max_abs_diff"] > atol:
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
    save_to = Path(spec["save_to"]) if spec.get("save_to") else None
    rows = [{**common, **run_probe(probe, out, spec["atol"], mode, save_to, spec.get("reload", True))}
            for probe in spec["probes"] for mode in spec.get("modes", [PINNED])]
    (out / "result.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
