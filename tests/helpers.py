"""Tiny models, inputs and checkpoint helpers shared by the test files (``from tests.helpers import ...``); the pytest
fixtures built on them are in ``conftest.py``.

Every checkpoint is written by the test itself (``save_pretrained`` or ``torch.save``/``save_file``) into a temporary
folder; nothing comes from the network.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest
import torch
import transformers
from packaging.version import Version
from safetensors.torch import load_file

import archit.instantiation.basemodels as basemodels

ATOL = RTOL = 1e-5
SEED = 0
BATCH, SEQ_LEN = 2, 7
VOCAB, HIDDEN, LAYERS, HEADS, INTERMEDIATE, POSITIONS = 99, 32, 2, 4, 37, 64

TRANSFORMERS_VERSION = Version(transformers.__version__)


def expected_era() -> str:
    """The era the installed transformers belongs to, computed here independently of ``compat``."""
    if TRANSFORMERS_VERSION >= Version("5.0.0.dev0"):
        return "5.0"
    if TRANSFORMERS_VERSION >= Version("4.50.0.dev0"):
        return "4.50"
    return "4.36"


def skip_on_era(*eras: str, reason: str):
    """The one place era-specific skips go through: ``@skip_on_era("4.36", reason=...)``."""
    return pytest.mark.skipif(expected_era() in eras, reason=f"transformers {TRANSFORMERS_VERSION}: {reason}")


# ---------------------------------------------------------------------------------------------------------------------
# Tiny configs, one per architecture.

def roberta_config(**overrides) -> transformers.RobertaConfig:
    kwargs = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=INTERMEDIATE, max_position_embeddings=POSITIONS, layer_norm_eps=1e-5,
                  pad_token_id=1, bos_token_id=0, eos_token_id=2, attn_implementation="eager")
    kwargs.update(overrides)
    return transformers.RobertaConfig(**kwargs)


def bert_config(**overrides) -> transformers.BertConfig:
    kwargs = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=INTERMEDIATE, max_position_embeddings=POSITIONS, pad_token_id=0,
                  attn_implementation="eager")
    kwargs.update(overrides)
    return transformers.BertConfig(**kwargs)


def gpt2_config(**overrides) -> transformers.GPT2Config:
    kwargs = dict(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=INTERMEDIATE,
                  n_positions=POSITIONS, bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1, attn_implementation="eager")
    kwargs.update(overrides)
    return transformers.GPT2Config(**kwargs)


def llama_config(**overrides) -> transformers.LlamaConfig:
    kwargs = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  num_key_value_heads=2, intermediate_size=INTERMEDIATE, max_position_embeddings=POSITIONS,
                  pad_token_id=0, attn_implementation="eager")
    kwargs.update(overrides)
    return transformers.LlamaConfig(**kwargs)


def mixtral_config(**overrides) -> transformers.MixtralConfig:
    """A tiny Mixtral (a mixture-of-experts decoder on every release from 4.36). Its feed-forward width is a multiple of
    8, so that each expert matrix's rows are a multiple of 16 bytes in bfloat16 and float32: transformers 5.x's default
    ``grouped_mm`` experts refuse other strides."""
    kwargs = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  num_key_value_heads=2, intermediate_size=48, max_position_embeddings=POSITIONS, num_local_experts=4,
                  num_experts_per_tok=2, pad_token_id=0)
    kwargs.update(overrides)
    return transformers.MixtralConfig(**kwargs)


def transformers_dtype_kwargs(dtype) -> Dict[str, object]:
    """``{"dtype": dtype}`` for transformers' own ``from_pretrained`` from 4.56 (where ``torch_dtype`` is a deprecated
    alias), ``{"torch_dtype": dtype}`` before."""
    return {"dtype" if TRANSFORMERS_VERSION >= Version("4.56.0.dev0") else "torch_dtype": dtype}


@dataclass(frozen=True)
class Arch:
    """One transformers family: its tiny config, its archit base class and its transformers classes."""
    name: str
    make_config: Callable[..., transformers.PretrainedConfig]
    base_class_name: str  # in archit.instantiation.basemodels
    core: type            # the transformers base model, e.g. RobertaModel
    prefix: str           # base_model_prefix of its task models, e.g. "roberta"
    token_classification: type
    question_answering: type

    @property
    def base_class(self):
        return getattr(basemodels, self.base_class_name)


ARCHS: Dict[str, Arch] = {
    "roberta": Arch("roberta", roberta_config, "RobertaBaseModel", transformers.RobertaModel, "roberta",
                    transformers.RobertaForTokenClassification, transformers.RobertaForQuestionAnswering),
    "bert": Arch("bert", bert_config, "BertBaseModel", transformers.BertModel, "bert",
                 transformers.BertForTokenClassification, transformers.BertForQuestionAnswering),
    "gpt2": Arch("gpt2", gpt2_config, "GPT2BaseModel", transformers.GPT2Model, "transformer",
                 transformers.GPT2ForTokenClassification, transformers.GPT2ForQuestionAnswering),
}


# ---------------------------------------------------------------------------------------------------------------------
# Models, inputs, checkpoints.

@torch.no_grad()
def perturb_(model: torch.nn.Module, seed: int = SEED) -> torch.nn.Module:
    """Add noise to every parameter, so that no weight keeps a value that initialisation alone would give it
    (LayerNorm ones/zeros, zero biases): a test that reads a weight then proves it was loaded."""
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.05)
    return model


def perturb_strongly_(model: torch.nn.Module, seed: int = SEED, scale: float = 0.5) -> torch.nn.Module:
    """Noise large enough that a tiny causal LM's greedy continuation varies from token to token (with ``perturb_``'s,
    a tiny GPT-2 repeats one token), so that generating the same tokens says something."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)
    return model


# The causal LMs that generation is checked on: GPT-2 (a legacy tuple cache on old releases, position ids learned) and
# Llama (a Cache class from 4.36, rotary positions, grouped-query attention).
CAUSAL_LMS: Dict[str, Callable[[], transformers.PretrainedConfig]] = {
    "gpt2": lambda: gpt2_config(),
    "llama": lambda: llama_config(bos_token_id=1, eos_token_id=2),
}


def save_causal_lm(name: str, directory: Path, seed: int = SEED) -> Path:
    """A tiny causal LM of transformers' own class (``AutoModelForCausalLM``) for the family ``name`` of
    ``CAUSAL_LMS``, with strongly perturbed weights, written by transformers' ``save_pretrained`` (with the
    ``generation_config.json`` transformers writes)."""
    config = CAUSAL_LMS[name]()
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    perturb_strongly_(model, seed).float().eval().save_pretrained(str(directory))
    return directory


def left_padded_prompts(pad_token_id: int, seed: int = SEED):
    """A batch of two prompts of 6 and 4 tokens, the shorter one padded on the left (how prompts of a batch are
    padded for generation), and its attention mask."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB - 1, (2, 6), generator=generator)
    attention_mask = torch.ones(2, 6, dtype=torch.long)
    input_ids[1, :2] = pad_token_id
    attention_mask[1, :2] = 0
    return input_ids, attention_mask


def build_transformers_model(cls: type, config: transformers.PretrainedConfig, seed: int = SEED):
    """A transformers model with seeded random weights, float32, in eval mode."""
    torch.manual_seed(seed)
    return perturb_(cls(config), seed).float().eval()


def save_transformers_model(cls: type, config, directory: Path, seed: int = SEED, **save_kwargs):
    model = build_transformers_model(cls, config, seed)
    model.save_pretrained(str(directory), **save_kwargs)
    return model


def make_inputs(seed: int = SEED):
    """Two sequences of 7 tokens; the second has two padding positions at the end."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB - 1, (BATCH, SEQ_LEN), generator=generator)
    attention_mask = torch.ones(BATCH, SEQ_LEN, dtype=torch.long)
    attention_mask[1, -2:] = 0
    return input_ids, attention_mask


def transformers_reference(cls: type, directory, **kwargs):
    """transformers' own class on the same checkpoint, eager attention, eval mode, float32."""
    return cls.from_pretrained(str(directory), attn_implementation="eager", **kwargs).float().eval()


def read_checkpoint_tensors(directory) -> Dict[str, torch.Tensor]:
    """All tensors of a local checkpoint folder, read with safetensors/torch directly (independent of archit)."""
    directory = Path(directory)
    tensors = {}
    for path in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(str(path)))
    if not tensors:
        for path in sorted(directory.glob("*.bin")):
            tensors.update(torch.load(str(path), map_location="cpu", weights_only=True))
    assert tensors, f"no weights in {directory}"
    return tensors


def read_json(path) -> dict:
    with open(path) as handle:
        return json.load(handle)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL, rtol: float = RTOL):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


def assert_same_outputs(actual, expected) -> None:
    """Outputs that the same weights computed twice (logits, losses, hidden states; a tensor or a tuple of them: before
    and after a save and reload, ...) agree within float rounding: ``torch.testing.assert_close`` with its defaults for
    the dtype (float32: rtol 1.3e-6, atol 1e-5), and the same dtype and shape.

    Why a tolerance and not ``torch.equal``: a reloaded model computes with zero-copy views into the memory-mapped
    safetensors file, whose data pointers are not 64-byte aligned; on some x86-64 CPUs (an AMD EPYC, for one) the
    vectorised kernels then round differently, and the logits differ by ~1e-8 although every weight is the same bit
    for bit (a ``clone()`` of the weights makes the difference 0.0). Tensors themselves, before any arithmetic (weights
    against the checkpoint's tensors), are still compared bitwise, with ``torch.equal``."""
    torch.testing.assert_close(actual, expected)


def assert_same_last_hidden_state(base_model, reference) -> None:
    """An archit base model and a transformers base model give the same last hidden state on ``make_inputs()``."""
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        actual = base_model(input_ids, attention_mask).last_hidden_state
        expected = reference(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    assert_close(actual, expected)


def loading_info_keys(entries) -> set:
    """Key names out of a loading-info list; mismatched keys may come as ``(key, shape_in_file, shape_in_model)``."""
    return {entry[0] if isinstance(entry, (tuple, list)) else entry for entry in entries}


def load_archit(task_cls, directory, arch: Optional[Arch] = None, base_class=None, **kwargs):
    """``task_cls.from_pretrained`` with eager attention, put in eval mode (unless it returns loading info)."""
    base_class = base_class if base_class is not None else arch.base_class
    kwargs.setdefault("attn_implementation", "eager")
    result = task_cls.from_pretrained(str(directory), base_class, **kwargs)
    if isinstance(result, tuple):
        result[0].eval()
    else:
        result.eval()
    return result
