"""DeepSpeed ZeRO-3 (issue 21): with an ``HfDeepSpeedConfig`` of stage 3 alive (as the Trainer and accelerate keep
one), transformers' ``is_deepspeed_zero3_enabled()`` is true and archit follows transformers' path: the model built
inside ``deepspeed.zero.Init`` (partitioned parameters), each loaded parameter filled gathered with ``modifier_rank=0``
(rank 0 writes), new head parameters initialised inside a gather.

The 2-process tests run DeepSpeed on the CPU (``DS_ACCELERATOR=cpu``, gloo) and are marked ``distributed``; they skip
where deepspeed is not installed (it is no dependency of archit). The fake-deepspeed tests run in the default suite:
which context the build enters with which config, which parameters are gathered with which modifier rank."""
import contextlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch
import transformers

from archit.instantiation.basemodels import AutoBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForCausalLM, ForSingleLabelTokenClassification

from tests.helpers import BATCH, SEQ_LEN, VOCAB, assert_close, llama_config
from tests.ranks import run_ranks

HEAD = TokenClassificationHeadConfig(num_labels=3)
ZERO3 = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}}
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="deepspeed is not installed (no dependency of archit): "
                                            "uv pip install deepspeed (DS_BUILD_OPS=0) to run it on the CPU")


def _input_ids():
    return torch.randint(1, VOCAB, (BATCH, SEQ_LEN), generator=torch.Generator().manual_seed(1))


def _gathered(model: torch.nn.Module) -> Dict[str, Any]:
    """Every parameter whole (gathered), with the logits computed meanwhile; numpy, to cross the process boundary."""
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        with torch.no_grad():
            logits = model(input_ids=_input_ids()).logits
        parameters = {name: p.detach().numpy().copy() for name, p in model.named_parameters()}
    return {"logits": logits.numpy().copy(), "parameters": parameters,
            "partitioned": all(hasattr(p, "ds_id") for p in model.parameters())}


def _load_on_rank(rank: int, world_size: int, folder: str, task: str) -> Dict[str, Any]:
    from transformers.integrations import HfDeepSpeedConfig

    keep_alive = HfDeepSpeedConfig(dict(ZERO3))  # noqa: F841 - transformers holds it by a weak reference
    if task == "causal_lm":
        reference = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
        model = ForCausalLM.from_pretrained(folder, AutoBaseModel, attn_implementation="eager")
        return {"reference": _gathered(reference), "archit": _gathered(model)}
    model = ForSingleLabelTokenClassification.from_pretrained(folder, AutoBaseModel, HEAD, attn_implementation="eager")
    return {"archit": _gathered(model)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("llama")
    transformers.LlamaForCausalLM(llama_config(tie_word_embeddings=False)).save_pretrained(folder)
    return folder


@pytest.mark.distributed
@needs_deepspeed
def test_zero3_load_equals_checkpoint_and_transformers(checkpoint: Path):
    """2 ranks under ZeRO-3: every archit parameter is partitioned; gathered, each equals the checkpoint's tensor
    bitwise, and the logits equal transformers' own ZeRO-3 load's and its one-process load's."""
    single = transformers.AutoModelForCausalLM.from_pretrained(str(checkpoint), attn_implementation="eager")
    with torch.no_grad():
        expected = single(input_ids=_input_ids()).logits
    stored = {name: p.detach() for name, p in single.named_parameters()}
    for rank, result in enumerate(run_ranks(_load_on_rank, str(checkpoint), "causal_lm", env={"DS_ACCELERATOR": "cpu"})):
        archit, reference = result["archit"], result["reference"]
        assert archit["partitioned"] and reference["partitioned"], f"rank {rank}: not built inside zero.Init"
        assert_close(torch.from_numpy(reference["logits"]), expected)
        assert_close(torch.from_numpy(archit["logits"]), torch.from_numpy(reference["logits"]))
        parameters = archit["parameters"]
        assert torch.equal(torch.from_numpy(parameters.pop("head.dense.weight")), stored["lm_head.weight"])
        assert {name.replace("model._core.", "model.", 1) for name in parameters} == set(stored) - {"lm_head.weight"}
        for name, value in parameters.items():
            assert torch.equal(torch.from_numpy(value), stored[name.replace("model._core.", "model.", 1)]), name


@pytest.mark.distributed
@needs_deepspeed
def test_zero3_new_head_initialised_gathered_by_rank_0(checkpoint: Path):
    """A head the checkpoint lacks is initialised inside a gather: both ranks end with rank 0's values (a head
    initialised per rank would differ), drawn as the head initialises (not left empty); the body equals the
    checkpoint."""
    results = run_ranks(_load_on_rank, str(checkpoint), "token_classification", env={"DS_ACCELERATOR": "cpu"})
    heads = [{k: v for k, v in r["archit"]["parameters"].items() if k.startswith("head.")} for r in results]
    assert set(heads[0]) == {"head.dense.weight", "head.dense.bias"}
    for name in heads[0]:
        assert torch.equal(torch.from_numpy(heads[0][name]), torch.from_numpy(heads[1][name])), name
    weight = torch.from_numpy(heads[0]["head.dense.weight"])
    assert torch.isfinite(weight).all() and 0 < weight.std() < 1
    stored = transformers.AutoModelForCausalLM.from_pretrained(str(checkpoint)).model.embed_tokens.weight.detach()
    assert torch.equal(torch.from_numpy(results[1]["archit"]["parameters"]["model._core.embed_tokens.weight"]), stored)


# ---------------------------------------------------------------------------------------------------------------------
# Without DeepSpeed: a fake deepspeed module records what archit asks of it, on one process.

class _FakeZero:
    """``deepspeed.zero`` recording the contexts entered: ``Init`` (which marks the parameters created inside as
    partitioned) and ``GatheredParameters`` (the parameters and the modifier rank)."""

    def __init__(self) -> None:
        self.inits: List[Any] = []
        self.gathers: List[tuple] = []

    @contextlib.contextmanager
    def Init(self, config_dict_or_path=None):  # noqa: N802 - DeepSpeed's name
        self.inits.append(config_dict_or_path)
        created: List[torch.nn.Parameter] = []
        original = torch.nn.Module.register_parameter

        def register(module, name, parameter):
            original(module, name, parameter)
            if parameter is not None:
                created.append(parameter)

        torch.nn.Module.register_parameter = register
        try:
            yield
        finally:
            torch.nn.Module.register_parameter = original
            for number, parameter in enumerate(created):
                parameter.ds_id = number
                parameter.ds_shape = parameter.shape

    @contextlib.contextmanager
    def GatheredParameters(self, parameters, modifier_rank=None):  # noqa: N802 - DeepSpeed's name
        self.gathers.append((list(parameters), modifier_rank))
        yield


@pytest.fixture
def fake_deepspeed(monkeypatch):
    import archit._compat.all_eras as all_eras

    zero = _FakeZero()
    monkeypatch.setitem(sys.modules, "deepspeed", types.SimpleNamespace(zero=zero))
    monkeypatch.setattr(all_eras, "is_deepspeed_zero3_enabled", lambda: True)
    monkeypatch.setattr(all_eras, "deepspeed_config", lambda: ZERO3)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *args, **kwargs: 0)
    return zero


def test_zero3_build_enters_init_with_the_config_and_gathers_each_parameter(checkpoint: Path, fake_deepspeed):
    """The build enters ``deepspeed.zero.Init`` with transformers' DeepSpeed config; each loaded parameter is gathered
    alone with ``modifier_rank=0``, once, in the checkpoint's order of placements; the new head's parameters are
    gathered together, with ``modifier_rank=0``, for their initialisation; the values are the checkpoint's."""
    model = ForSingleLabelTokenClassification.from_pretrained(str(checkpoint), AutoBaseModel, HEAD,
                                                              attn_implementation="eager")
    assert fake_deepspeed.inits == [ZERO3]
    loads, (initialised, rank) = fake_deepspeed.gathers[:-1], fake_deepspeed.gathers[-1]
    core = dict(model.named_parameters())
    names = {id(p): n for n, p in core.items()}
    assert all(len(params) == 1 and modifier == 0 for params, modifier in loads)
    assert sorted(names[id(params[0])] for params, _ in loads) == sorted(n for n in core if not n.startswith("head."))
    assert rank == 0 and {names[id(p)] for p in initialised} == {"head.dense.weight", "head.dense.bias"}
    stored = transformers.AutoModelForCausalLM.from_pretrained(str(checkpoint)).model.embed_tokens.weight
    assert torch.equal(model.base_model.embed_tokens.weight, stored)
