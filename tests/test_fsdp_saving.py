"""``save_pretrained`` of a model that FSDP shards over 2 CPU ranks (gloo, ``tests/ranks.py``), FSDP1
(``FullyShardedDataParallel``, accelerate's default ``use_orig_params=False``, the encoder layers their own units as
accelerate's ``transformer_based_wrap`` makes them) and FSDP2 (``fully_shard`` on each layer, then on the model, as
accelerate's ``fsdp2_prepare_model`` does): trained one step so that the weights differ from the checkpoint, saved by
every rank, the checkpoint reloads in one process to the logits the sharded model computed, holds the gathered tensors
bit for bit and is, file for file, what an unsharded save of the same weights writes.

The models are wrapped with torch's own FSDP classes, not through accelerate: accelerate (0.34 and 1.16 alike) shards
only on accelerators, and on a CPU-only machine prepares the model for DDP instead (``Trainer(fsdp="full_shard")``
included: it trains and saves without sharding). What ``accelerator.unwrap_model`` gives is what these tests call
``save_pretrained`` on: the model inside the FSDP1 wrapper, the model itself under FSDP2.
"""
import filecmp
import io
import os
from pathlib import Path

import pytest
import torch
import transformers

from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import MaskedLMHeadConfig, TokenClassificationHeadConfig
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.tasks import ForMaskedLM, ForSingleLabelTokenClassification

from tests.helpers import (
    assert_close,
    make_inputs,
    perturb_,
    read_checkpoint_tensors,
    roberta_config,
    save_transformers_model,
)
from tests.ranks import run_ranks

pytestmark = pytest.mark.distributed

TIMEOUT_S = 150.0  # A save that hangs (a collective one rank skips) fails in minutes, not after ranks.py's 10.


def _load(kind: str, checkpoint: str):
    cls = ModelWithHeads if kind == "heads" else ForSingleLabelTokenClassification
    return cls.from_pretrained(checkpoint, RobertaBaseModel, attn_implementation="eager")


def _logits(model, input_ids, attention_mask) -> torch.Tensor:
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return torch.cat([logits[name].flatten() for name in sorted(logits)]) if isinstance(logits, dict) \
        else logits.flatten()


def _shard(model, version: int):
    """``model`` sharded as accelerate shards it (each encoder layer a unit of its own, the rest in the root's)."""
    from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    layers = model.base_model.encoder.layer
    if version == 1:
        return FullyShardedDataParallel(model, auto_wrap_policy=ModuleWrapPolicy({type(layers[0])}),
                                        device_id=torch.device("cpu"), use_orig_params=False)
    for layer in layers:
        fully_shard(layer)
    return fully_shard(model)


def _train_and_save(rank: int, world_size: int, version: int, jobs):
    """For each ``(kind, checkpoint, out)`` of ``jobs``: one SGD step on the sharded model, its logits and the full
    state dict torch gathers, then ``save_pretrained`` of the model (as ``accelerator.unwrap_model`` gives it) on every
    rank, and the files in ``out`` when it returns. Several models in one pair of processes: starting them is most of
    the time a test takes."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    results = []
    for kind, checkpoint, out in jobs:
        sharded = _shard(_load(kind, checkpoint), version)
        optimizer = torch.optim.SGD(sharded.parameters(), lr=0.5)
        input_ids, attention_mask = make_inputs(seed=rank)
        _logits(sharded, input_ids, attention_mask).pow(2).mean().backward()
        optimizer.step()
        sharded.eval()
        input_ids, attention_mask = make_inputs()
        with torch.no_grad():
            logits = _logits(sharded, input_ids, attention_mask)
        gathered = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
        unwrapped = sharded.module if version == 1 else sharded
        # As accelerate's users call it (is_main_process=accelerator.is_main_process), and with the default.
        unwrapped.save_pretrained(out, **({"is_main_process": rank == 0} if kind == "heads" else {}))
        results.append((_as_bytes((logits, gathered)) if rank == 0 else None, sorted(os.listdir(out))))
    # A save rank 0 cannot write (its folder would be under a file): every rank raises, none waits forever.
    try:
        unwrapped.save_pretrained(os.path.join(out, "config.json", "folder"))
    except (OSError, RuntimeError) as error:
        return results, f"{type(error).__name__}: {error}"
    return results, None


def _as_bytes(tensors) -> bytes:
    """Tensors as bytes: multiprocessing passes tensors through shared memory that a finished rank no longer serves."""
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The archit checkpoints the ranks load: a token classifier, and a model with a token-classification head and a
    masked-LM head whose output matrix is tied to the input embeddings (a tensor saved once)."""
    folder = tmp_path_factory.mktemp("fsdp-saving")
    torch.manual_seed(0)
    base = perturb_(RobertaBaseModel(roberta_config()))
    tagger = ForSingleLabelTokenClassification.fromModelAndHeadConfig(base, TokenClassificationHeadConfig(num_labels=5))
    tagger.save_pretrained(str(folder / "tagger"))
    heads = ModelWithHeads.fromModelAndHeadConfigs(base, {
        "ner": (ForSingleLabelTokenClassification, TokenClassificationHeadConfig(num_labels=5)),
        "mlm": (ForMaskedLM, MaskedLMHeadConfig())})
    perturb_(heads).save_pretrained(str(folder / "heads"))
    return folder


@pytest.mark.parametrize("version", [1, 2], ids=["fsdp1", "fsdp2"])
def test_sharded_model_saves_on_every_rank_and_reloads_in_one_process(checkpoints, tmp_path, version):
    kinds = ("tagger", "heads")
    jobs = [(kind, str(checkpoints / kind), str(tmp_path / kind)) for kind in kinds]
    (on_0, failure_on_0), (on_1, failure_on_1) = run_ranks(_train_and_save, version, jobs, timeout=TIMEOUT_S)
    assert failure_on_0 is not None and failure_on_0.startswith(("NotADirectoryError", "FileExistsError"))
    assert failure_on_1 == f"RuntimeError: save_pretrained failed on rank 0, which writes " \
                           f"'{tmp_path / 'heads' / 'config.json' / 'folder'}': {failure_on_0}"
    for kind, (sent, complete_on_0), (_, complete_on_1) in zip(kinds, on_0, on_1):
        logits, gathered = torch.load(io.BytesIO(sent))
        # Every rank returned after the commit: the checkpoint was complete when save_pretrained returned on either.
        assert complete_on_0 == complete_on_1 == sorted(os.listdir(tmp_path / kind)), kind
        assert {"config.json", "model.safetensors"} <= set(complete_on_0), kind
        _check_checkpoint(kind, tmp_path / kind, checkpoints / kind, logits, gathered, tmp_path / f"{kind}-unsharded")


def _check_checkpoint(kind: str, out: Path, initial: Path, logits: torch.Tensor, gathered, unsharded_out: Path):
    """``out`` reloads in one process to ``logits`` (the trained sharded model's, which differ from the initial
    checkpoint's), holds the ``gathered`` tensors bit for bit (a tied matrix once) and is what an unsharded save of
    the same weights writes, file for file."""
    reloaded = _load(kind, str(out)).eval()
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        assert_close(_logits(reloaded, input_ids, attention_mask), logits)
        assert not torch.equal(_logits(_load(kind, str(initial)).eval(), input_ids, attention_mask), logits)

    saved = read_checkpoint_tensors(out)
    tied = {"heads.mlm.dense2.weight"} if kind == "heads" else set()
    assert set(saved) == set(gathered) - tied
    for key, tensor in saved.items():
        assert torch.equal(tensor, gathered[key]), key

    unsharded = _load(kind, str(initial))
    unsharded.load_state_dict(gathered)
    unsharded.save_pretrained(str(unsharded_out))
    assert sorted(os.listdir(out)) == sorted(os.listdir(unsharded_out))
    assert filecmp.cmpfiles(str(out), str(unsharded_out), sorted(os.listdir(out)), shallow=False)[1:] == ([], [])


def _save_as_the_trainer_does(rank: int, world_size: int, jobs):
    """For each ``(library, checkpoint, out)``: FSDP2, one SGD step, then what ``Trainer.save_model`` does under FSDP
    with a full state dict: the weights gathered as accelerate's ``get_state_dict`` gathers them under FSDP2 (on every
    rank, to the CPU of rank 0), and ``save_pretrained(out, state_dict=...)`` of the model on rank 0 alone (the other
    ranks return from ``Trainer._save`` first). Rank 0 answers the trained model's logits."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    results = []
    for library, checkpoint, out in jobs:
        model = _load_masked_lm(library, checkpoint)
        sharded = _shard(model, 2)
        optimizer = torch.optim.SGD(sharded.parameters(), lr=0.5)
        input_ids, attention_mask = make_inputs(seed=rank)
        sharded(input_ids=input_ids, attention_mask=attention_mask).logits.pow(2).mean().backward()
        optimizer.step()
        sharded.eval()
        input_ids, attention_mask = make_inputs()
        with torch.no_grad():
            logits = sharded(input_ids=input_ids, attention_mask=attention_mask).logits
        state_dict = get_model_state_dict(sharded, options=StateDictOptions(
            full_state_dict=True, broadcast_from_rank0=True, cpu_offload=True))
        if rank == 0:
            sharded.save_pretrained(out, state_dict=state_dict, is_main_process=True)
        results.append(_as_bytes(logits) if rank == 0 else None)
    return results


def _load_masked_lm(library: str, checkpoint: str):
    if library == "archit":
        return ForMaskedLM.from_pretrained(checkpoint, RobertaBaseModel, attn_implementation="eager")
    return transformers.RobertaForMaskedLM.from_pretrained(checkpoint, attn_implementation="eager")


def test_state_dict_gathered_by_the_caller_is_saved_by_rank_0_alone_as_transformers_saves_it(tmp_path):
    """The Trainer's save under FSDP (``save_model``: accelerate gathers, ``save_pretrained(state_dict=...)`` on the
    main process only): archit writes the given weights without waiting for the other ranks, a tied output matrix once
    (gathering copied it apart), the files an unsharded save of those weights writes; the reloaded model computes the
    sharded model's logits, as transformers' own ``RobertaForMaskedLM`` does through the same steps."""
    checkpoint = tmp_path / "roberta-mlm"
    save_transformers_model(transformers.RobertaForMaskedLM, roberta_config(), checkpoint)
    libraries = ("archit", "transformers")
    on_0, _ = run_ranks(_save_as_the_trainer_does, [(library, str(checkpoint), str(tmp_path / library))
                                                    for library in libraries], timeout=TIMEOUT_S)
    logits = {library: torch.load(io.BytesIO(sent)) for library, sent in zip(libraries, on_0)}
    assert_close(logits["archit"], logits["transformers"])
    input_ids, attention_mask = make_inputs()
    for library in libraries:
        reloaded = _load_masked_lm(library, str(tmp_path / library)).eval()
        with torch.no_grad():
            assert_close(reloaded(input_ids=input_ids, attention_mask=attention_mask).logits, logits[library])

    unsharded = _load_masked_lm("archit", str(checkpoint))
    unsharded.load_state_dict(_load_masked_lm("archit", str(tmp_path / "archit")).state_dict())
    unsharded.save_pretrained(str(tmp_path / "unsharded"))
    assert sorted(os.listdir(tmp_path / "archit")) == sorted(os.listdir(tmp_path / "unsharded"))
    assert filecmp.cmpfiles(str(tmp_path / "archit"), str(tmp_path / "unsharded"),
                            sorted(os.listdir(tmp_path / "archit")), shallow=False)[1:] == ([], [])
    assert "head.dense2.weight" not in read_checkpoint_tensors(tmp_path / "archit")
