"""FSDP's RAM-efficient loading (issue 21): with ``ACCELERATE_USE_FSDP`` and ``FSDP_CPU_RAM_EFFICIENT_LOADING`` set and
``torch.distributed`` initialised, only local rank 0 reads the checkpoint; the other ranks read no tensor data and leave
the model's tensors where the installed transformers leaves them, for accelerate's FSDP preparation to fill from rank 0.
Every test runs archit's model side by side with transformers' own ``AutoModelForTokenClassification`` on the same
checkpoint, in the same 2-process gloo group (``tests/ranks.py``), or against one process of transformers' own.
"""
import os
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch
import transformers
from packaging.version import Version

from tests.helpers import TRANSFORMERS_VERSION, make_inputs, roberta_config, save_transformers_model
from tests.ranks import run_ranks

pytestmark = pytest.mark.distributed

FSDP_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"}
"""What accelerate's launcher (``fsdp_cpu_ram_efficient_loading``) and the Trainer's ``fsdp_config``
(``cpu_ram_efficient_loading``) set."""
NUM_LABELS = 3
CORE = "model._core."
BIG = dict(vocab_size=4000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
"""~4.3M parameters (17 MB in float32): enough to tell reading it from not in each rank's resident memory."""


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def _archit_load(folder: str, **kwargs: Any):
    from archit.instantiation.basemodels import RobertaBaseModel
    from archit.instantiation.heads import TokenClassificationHeadConfig
    from archit.instantiation.tasks import ForSingleLabelTokenClassification

    return ForSingleLabelTokenClassification.from_pretrained(
        folder, RobertaBaseModel, TokenClassificationHeadConfig(num_labels=NUM_LABELS), **kwargs)


def _transformers_load(folder: str):
    return transformers.AutoModelForTokenClassification.from_pretrained(folder, num_labels=NUM_LABELS,
                                                                        attn_implementation="eager")


def _body(model: torch.nn.Module, prefix: str) -> Dict[str, torch.Tensor]:
    return {name[len(prefix):]: tensor for name, tensor in model.state_dict().items() if name.startswith(prefix)}


def _head_devices(model: torch.nn.Module, prefix: str) -> List[str]:
    return sorted({str(p.device) for name, p in model.named_parameters() if not name.startswith(prefix)})


def _raw_loads(rank: int, world_size: int, folder: str, warmup: str) -> Dict[str, Any]:
    """Both loads on this rank, archit's first (so that no freed copy of the checkpoint's data lies in the heap for its
    empty tensors to be handed), each after a warm-up load of a tiny checkpoint (imports, first-call caches); what each
    did: resident memory growth, whether its body equals the checkpoint, where it left tensors."""
    from safetensors.torch import load_file

    from archit.cli.inspection import inspect_checkpoint, render
    from archit.instantiation.basemodels import RobertaBaseModel
    from archit.instantiation.heads import TokenClassificationHeadConfig
    from archit.instantiation.tasks import ForSingleLabelTokenClassification
    from archit.loading import files, plan_loading

    reads: List[str] = []
    get = files.CheckpointReader.get
    files.CheckpointReader.get = lambda self, key: (reads.append(key), get(self, key))[1]  # type: ignore[method-assign]
    _archit_load(warmup), _transformers_load(warmup)
    reads.clear()
    plan = plan_loading(ForSingleLabelTokenClassification, folder, RobertaBaseModel,
                        TokenClassificationHeadConfig(num_labels=NUM_LABELS))
    inspected = inspect_checkpoint(folder)
    before = _rss_mb()
    archit = _archit_load(folder)
    archit_growth = _rss_mb() - before
    before = _rss_mb()
    hf = _transformers_load(folder)
    hf_growth = _rss_mb() - before
    stored = load_file(os.path.join(folder, "model.safetensors"))

    def equal_to_stored(body: Dict[str, torch.Tensor]) -> Dict[str, bool]:
        return {k: t.device.type != "meta" and torch.equal(t, stored[k]) for k, t in body.items() if k in stored}

    buffers = {name: tensor.tolist() for name, tensor in archit.named_buffers()}  # Plain values: a tensor would
    # cross to the parent through shared memory that this process's exit takes away.
    return {"archit_growth": archit_growth, "transformers_growth": hf_growth, "reads": len(reads),
            "plans_reading": plan.reads_tensor_data, "inspect_reads": inspected.reads_tensor_data,
            "inspect_text": render(inspected),
            "archit_equal": equal_to_stored(_body(archit, CORE)), "transformers_equal": equal_to_stored(_body(hf, "roberta.")),
            "archit_body_devices": {k: str(t.device) for k, t in _body(archit, CORE).items()},
            "transformers_body_devices": {k: str(t.device) for k, t in _body(hf, "roberta.").items()},
            "archit_head_devices": _head_devices(archit, CORE), "transformers_head_devices": _head_devices(hf, "roberta."),
            "archit_buffers": buffers}


@pytest.fixture(scope="module")
def bare_checkpoint(tmp_path_factory) -> Dict[str, str]:
    """A RoBERTa body alone (the tagger's head is new), and a tiny one to warm up with."""
    root = tmp_path_factory.mktemp("fsdp")
    save_transformers_model(transformers.RobertaModel, roberta_config(**BIG), root / "big")
    save_transformers_model(transformers.RobertaModel, roberta_config(), root / "tiny")
    return {"big": str(root / "big"), "tiny": str(root / "tiny")}


def test_only_local_rank_0_reads_and_the_others_leave_tensors_where_transformers_does(bare_checkpoint):
    """Rank 0 reads the checkpoint (its body bitwise the file's); rank 1 reads no tensor (none fetched from the file,
    its plan and ``archit inspect`` say so, no value the file's), and leaves body and new head on the devices transformers' rank 1 leaves
    them (empty on the CPU; the new head on the CPU on 4.x, on the meta device on 5.x) with non-persistent buffers
    computed as on rank 0; its resident growth is not above transformers' (both printed)."""
    ranks = run_ranks(_raw_loads, bare_checkpoint["big"], bare_checkpoint["tiny"], env=FSDP_ENV)
    for rank, result in enumerate(ranks):
        print(f"transformers {TRANSFORMERS_VERSION}, rank {rank}: RSS growth over the load of a "
              f"{os.path.getsize(Path(bare_checkpoint['big']) / 'model.safetensors') / 2**20:.0f} MB checkpoint: "
              f"archit {result['archit_growth']:+.1f} MB, transformers {result['transformers_growth']:+.1f} MB; "
              f"transformers read the weights: {all(result['transformers_equal'].values())}")
    first, second = ranks
    assert first["plans_reading"] and first["reads"] > 0 and all(first["archit_equal"].values())
    assert all(first["transformers_equal"].values())
    assert first["inspect_reads"] and "no tensor data" not in first["inspect_text"]
    assert not second["plans_reading"] and second["reads"] == 0
    assert second["inspect_reads"] is False and "no tensor data on this rank" in second["inspect_text"]
    assert not any(second["archit_equal"].values())
    assert second["archit_body_devices"] == second["transformers_body_devices"]
    assert second["archit_head_devices"] == (["meta"] if TRANSFORMERS_VERSION.major >= 5 else ["cpu"])
    if TRANSFORMERS_VERSION < Version("5.23"):  # 5.0 and, as far as measured, releases before 5.23: every parameter
        # of rank 1 empty on the CPU and initialised anew; archit leaves the new head on meta as 5.23+ do.
        assert second["transformers_head_devices"] == ["cpu"]
    else:
        assert second["archit_head_devices"] == second["transformers_head_devices"]
    assert set(second["archit_buffers"]) == set(first["archit_buffers"])
    for name, buffer in first["archit_buffers"].items():
        assert second["archit_buffers"][name] == buffer, name
    assert second["archit_growth"] <= second["transformers_growth"] + 8.0


@pytest.fixture(scope="module")
def tagger_checkpoint(tmp_path_factory) -> str:
    """A transformers token classifier (its head loads too): the logits of one process of transformers are the
    reference."""
    folder = tmp_path_factory.mktemp("fsdp") / "tagger"
    save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=NUM_LABELS), folder)
    return str(folder)


def _fsdp2_plugin():
    from accelerate.utils import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin(fsdp_version=2, cpu_ram_efficient_loading=True)


def _fsdp2_accelerator(plugin: Any):
    """accelerate's ``Accelerator`` preparing models with FSDP2 on this CPU-only machine. accelerate chooses FSDP only
    for accelerator devices (``DistributedType.FSDP`` is set among the ``MULTI_GPU``/``MULTI_XPU``/... branches; on the
    CPU it answers ``MULTI_CPU`` and ``prepare`` wraps in DDP), so the state is given FSDP and the plugin as a GPU
    machine's would be; ``prepare`` then runs accelerate's own ``fsdp2_prepare_model`` and
    ``fsdp2_load_full_state_dict`` over gloo."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    accelerator = Accelerator(cpu=True, fsdp_plugin=plugin)
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin
    return accelerator


def _fsdp2_logits(rank: int, world_size: int, folder: str) -> Dict[str, Any]:
    """archit's tagger and transformers' loaded under RAM-efficient loading, each prepared by accelerate's FSDP2
    (``fsdp2_load_full_state_dict`` broadcasts rank 0's tensors), then run."""
    from accelerate.state import AcceleratorState
    from torch.distributed.fsdp import FSDPModule

    input_ids, attention_mask = make_inputs()
    logits: Dict[str, Any] = {}
    for name, load in (("archit", _archit_load), ("transformers", _transformers_load)):
        model = load(folder)
        prepared = _fsdp2_accelerator(_fsdp2_plugin()).prepare(model)
        assert isinstance(prepared, FSDPModule), f"rank {rank}: accelerate did not shard {name}'s model with FSDP2"
        with torch.no_grad():
            logits[name] = prepared(input_ids=input_ids, attention_mask=attention_mask).logits.tolist()
        AcceleratorState._reset_state(True)
    return logits


def _one_process_logits(folder: str) -> torch.Tensor:
    reference = _transformers_load(folder).eval()
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        return reference(input_ids=input_ids, attention_mask=attention_mask).logits


def _has_fsdp2() -> bool:
    from accelerate.utils import FullyShardedDataParallelPlugin

    return "fsdp_version" in FullyShardedDataParallelPlugin.__dataclass_fields__


def test_accelerate_fsdp2_preparation_gives_every_rank_the_checkpoint(tagger_checkpoint):
    """After accelerate's FSDP2 preparation with RAM-efficient loading (``fsdp2_load_full_state_dict``), both ranks'
    logits are those of one process of transformers' own class on the checkpoint, as are those of transformers' class
    loaded and prepared the same way."""
    if not _has_fsdp2():
        pytest.skip(f"transformers {TRANSFORMERS_VERSION}'s accelerate has no FSDP2 (fsdp_version=2 came in 1.6)")
    expected = _one_process_logits(tagger_checkpoint)
    for rank, logits in enumerate(run_ranks(_fsdp2_logits, tagger_checkpoint, env=FSDP_ENV)):
        for name in ("transformers", "archit"):
            torch.testing.assert_close(torch.tensor(logits[name]), expected, rtol=1e-5, atol=1e-5,
                                       msg=lambda m: f"rank {rank}, {name}: {m}")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP1's RAM-efficient loading is sync_module_states, "
                    "which needs a GPU per rank: accelerate's plugin refuses it on the CPU ('FSDP parameter "
                    "initialization with `sync_module_states=True` is not supported on cpu'), and so does torch's "
                    "FSDP1 ('The module has CPU parameters or buffers when `sync_module_states=True`, which requires "
                    "them to be on GPU')")
def test_accelerate_fsdp1_preparation_gives_every_rank_the_checkpoint(tagger_checkpoint):
    """On two GPUs: after accelerate's FSDP1 preparation (``sync_module_states``), both ranks' logits are one process
    of transformers' own."""
    expected = _one_process_logits(tagger_checkpoint)
    for rank, logits in enumerate(run_ranks(_fsdp1_logits, tagger_checkpoint, env=FSDP_ENV)):
        for name in ("transformers", "archit"):
            torch.testing.assert_close(torch.tensor(logits[name]), expected.cpu(), rtol=1e-4, atol=1e-4,
                                       msg=lambda m: f"rank {rank}, {name}: {m}")


def _fsdp1_logits(rank: int, world_size: int, folder: str) -> Dict[str, Any]:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import FullyShardedDataParallelPlugin

    input_ids, attention_mask = make_inputs()
    logits: Dict[str, Any] = {}
    for name, load in (("archit", _archit_load), ("transformers", _transformers_load)):
        model = load(folder)
        accelerator = Accelerator(fsdp_plugin=FullyShardedDataParallelPlugin(sync_module_states=True,
                                                                              cpu_ram_efficient_loading=True))
        prepared = accelerator.prepare(model)
        with torch.no_grad():
            logits[name] = prepared(input_ids=input_ids.to(accelerator.device),
                                    attention_mask=attention_mask.to(accelerator.device)).logits.cpu().tolist()
        AcceleratorState._reset_state(True)
    return logits


def _trainer_losses(rank: int, world_size: int, folder: str, output: str) -> Dict[str, Any]:
    """Two steps of the ``Trainer`` with ``fsdp="full_shard"`` and RAM-efficient loading, for archit's tagger and
    transformers', from the same seed and weights."""
    input_ids, attention_mask = make_inputs()
    labels = torch.arange(input_ids.shape[1]) % NUM_LABELS
    data = [{"input_ids": input_ids[i], "attention_mask": attention_mask[i], "labels": labels} for i in range(2)] * 2
    losses: Dict[str, Any] = {}
    for name, load in (("archit", _archit_load), ("transformers", _transformers_load)):
        torch.manual_seed(0)
        args = transformers.TrainingArguments(
            output_dir=os.path.join(output, name), fsdp="full_shard", fsdp_config={"cpu_ram_efficient_loading": True},
            max_steps=2, per_device_train_batch_size=1, report_to=[], save_strategy="no", seed=0, learning_rate=1e-3)
        trainer = transformers.Trainer(model=load(folder), args=args, train_dataset=data)
        losses[name] = trainer.train().training_loss
    return losses


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="the Trainer's FSDP needs accelerate's FSDP, which accelerate "
                    "picks only for accelerator devices: on the CPU (gloo) the Trainer with fsdp='full_shard' and "
                    "cpu_ram_efficient_loading trains with DDP (DistributedType.MULTI_CPU, the model wrapped in "
                    "DistributedDataParallel), measured on transformers 5.24 with accelerate 1.16")
def test_trainer_with_fsdp_trains_as_transformers_model_does(tagger_checkpoint, tmp_path):
    """On two GPUs: the Trainer with FSDP and RAM-efficient loading trains archit's tagger two steps on both ranks to
    the loss of transformers' class from the same weights and seed."""
    for losses in run_ranks(_trainer_losses, tagger_checkpoint, str(tmp_path), env=FSDP_ENV):
        assert losses["archit"] == pytest.approx(losses["transformers"], rel=1e-4)
