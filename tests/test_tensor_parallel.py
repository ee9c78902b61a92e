"""Tensor parallelism (issue 21): ``from_pretrained(distributed_config=DistributedConfig(tp_size=2))`` (later 5.x) or
``tp_plan="auto"`` (5.0) on two CPU processes in a gloo group. The body takes transformers' own plan through the
release's own functions (``compat.distribute_core``, ``compat.load_sharded``), the heads stay whole on every rank; the
logits equal transformers' one-process logits and its own tensor-parallel load's, and the body is sharded exactly as
transformers shards its own model. On 4.x the keywords are refused, naming the keyword and the release.

The 2-process tests are marked ``distributed`` (``pytest -m distributed``, ``nox -t distributed``)."""
from pathlib import Path
from typing import Any, Dict

import pytest
import torch
import transformers

from archit.instantiation.basemodels import AutoBaseModel
from archit.instantiation.tasks import ForCausalLM, ForSingleLabelTokenClassification

from tests.helpers import BATCH, SEQ_LEN, VOCAB, assert_close, llama_config, skip_on_era
from tests.ranks import run_ranks

NUM_LABELS = 3
TASKS = {  # archit task -> (archit class, transformers' Auto class, transformers' class name); "_tied": output tied
    "causal_lm": (ForCausalLM, "AutoModelForCausalLM", "LlamaForCausalLM"),
    "causal_lm_tied": (ForCausalLM, "AutoModelForCausalLM", "LlamaForCausalLM"),
    # By name: 4.36 has no LlamaForTokenClassification, and this module is collected on every release.
    "token_classification": (ForSingleLabelTokenClassification, "AutoModelForTokenClassification",
                             "LlamaForTokenClassification"),
}
needs_5x = skip_on_era("4.36", "4.50", reason="archit follows tensor parallelism on transformers 5.x")


def _input_ids():
    return torch.randint(1, VOCAB, (BATCH, SEQ_LEN), generator=torch.Generator().manual_seed(1))


def _tp_keywords() -> Dict[str, Any]:
    """The release's own way to ask for 2-way tensor parallelism with the model's plan."""
    try:  # Later 5.x: DistributedConfig(tp_size=...); tp_plan= is deprecated there.
        from transformers.distributed.configuration_utils import DistributedConfig
        return {"distributed_config": DistributedConfig(tp_size=2)}
    except (ImportError, TypeError):  # 5.0: DistributedConfig has no tp_size; tp_plan="auto" is the way.
        return {"tp_plan": "auto"}


def _local_shapes(module: torch.nn.Module) -> Dict[str, tuple]:
    """Each parameter's type and the shape this rank holds (a DTensor's local shard)."""
    return {name: (type(p.data).__name__, tuple(p.to_local().shape) if hasattr(p, "to_local") else tuple(p.shape))
            for name, p in module.named_parameters()}


def _load_on_rank(rank: int, world_size: int, folder: str, task: str) -> Dict[str, Any]:
    archit_class, auto_class, _ = TASKS[task]
    keywords = _tp_keywords()
    reference = getattr(transformers, auto_class).from_pretrained(folder, attn_implementation="eager", **keywords)
    model = archit_class.from_pretrained(folder, AutoBaseModel, attn_implementation="eager", **keywords)
    ids = _input_ids()
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
        actual = model(input_ids=ids).logits
    reference_head = reference.get_output_embeddings() if task.startswith("causal_lm") else reference.score
    # A DTensor head parameter is gathered whole (every rank takes part, in the same order) to compare its values.
    head = {name: (shape, (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().numpy().copy())
            for (name, p), shape in zip(model.head.named_parameters(remove_duplicate=False),
                                        _local_shapes(model.head).values())}
    return {"expected": expected.numpy().copy(), "actual": actual.numpy().copy(),
            "reference_body": _local_shapes(reference.base_model), "body": _local_shapes(model.base_model),
            "reference_head": _local_shapes(reference_head), "head": head,
            "tied": model.head.dense.weight is model.base_model.get_input_embeddings().weight}


@pytest.fixture(scope="module", params=sorted(TASKS))
def checkpoint(request, tmp_path_factory) -> Path:
    """A transformers Llama task checkpoint (untied output matrix), and its one-process logits."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    hf_class = getattr(transformers, TASKS[request.param][2])
    # Widths that 2 ranks divide: transformers 5.0's own tensor parallelism fails on an uneven split of the MLP
    # (intermediate_size 37: "a and b must have same reduction dim, but got [14, 38] X [37, 32]"); later 5.x split
    # unevenly.
    config = llama_config(num_labels=NUM_LABELS, tie_word_embeddings=request.param.endswith("_tied"),
                          vocab_size=100, intermediate_size=64)
    hf_class(config).save_pretrained(folder)
    return folder


@pytest.mark.distributed
@needs_5x
def test_tensor_parallel_body_takes_transformers_plan_and_heads_stay_whole(checkpoint: Path):
    """On 2 ranks: logits equal transformers' one-process logits and its own tensor-parallel load's on the same ranks;
    every body parameter has transformers' local shape and type (DTensor shards where its plan shards); each head
    parameter is a whole plain tensor on every rank, equal to the checkpoint's."""
    task = checkpoint.name.rstrip("0123456789")
    _, auto_class, _ = TASKS[task]
    one_process = getattr(transformers, auto_class).from_pretrained(str(checkpoint), attn_implementation="eager")
    with torch.no_grad():
        single = one_process(input_ids=_input_ids()).logits
    head = one_process.get_output_embeddings() if task.startswith("causal_lm") else one_process.score
    results = run_ranks(_load_on_rank, str(checkpoint), task)
    for rank, result in enumerate(results):
        assert_close(torch.from_numpy(result["expected"]), single)  # transformers' own TP: the reference holds.
        assert_close(torch.from_numpy(result["actual"]), single)
        assert_close(torch.from_numpy(result["actual"]), torch.from_numpy(result["expected"]))
        assert result["body"] == result["reference_body"], f"rank {rank}: body sharded unlike transformers'"
        assert any(kind == "DTensor" for kind, _ in result["body"].values()), "nothing was sharded"
        assert {name.rpartition(".")[2] for name in result["head"]} == {name for name, _ in head.named_parameters()}
        assert result["tied"] == task.endswith("_tied")
        for name, (shape, value) in result["head"].items():
            if result["tied"]:  # The body's embeddings (vocabulary-sharded on later 5.x): as transformers' lm_head.
                assert shape == result["reference_head"][name.rpartition(".")[2]], f"rank {rank}: {name}: {shape}"
            else:
                assert shape == ("Tensor", tuple(value.shape)), f"rank {rank}: head {name} is not whole: {shape}"
            assert torch.equal(torch.from_numpy(value), getattr(head, name.rpartition(".")[2]).detach())


@skip_on_era("5.0", reason="transformers 5.x has tensor parallelism, and archit follows it")
@pytest.mark.parametrize("keyword", ["tp_plan", "distributed_config", "tp_size", "device_mesh"])
def test_tensor_parallel_keywords_refused_where_not_followed(tmp_path: Path, keyword: str):
    """4.x: a TypeError that names the keyword and the release, before anything is read."""
    transformers.LlamaForCausalLM(llama_config()).save_pretrained(tmp_path)
    with pytest.raises(TypeError, match=rf"'{keyword}'.*transformers {transformers.__version__}"):
        ForCausalLM.from_pretrained(str(tmp_path), AutoBaseModel, **{keyword: "auto"})


@needs_5x
def test_tensor_parallel_and_device_map_are_exclusive(tmp_path: Path):
    transformers.LlamaForCausalLM(llama_config()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="device_map"):
        ForCausalLM.from_pretrained(str(tmp_path), AutoBaseModel, tp_plan="auto", device_map="cpu")
