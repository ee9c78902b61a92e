"""Train a small archit token classifier under FSDP on 2 processes, save it from every rank and reload it in one
process. Builds its own checkpoint (no model hub needed):

    accelerate launch --config_file examples/accelerate/fsdp1.yaml examples/train_fsdp.py [--workdir DIR]
    accelerate launch --config_file examples/accelerate/fsdp2.yaml examples/train_fsdp.py [--workdir DIR]

With accelerators, ``accelerator.prepare`` shards the model (FullyShardedDataParallel for ``fsdp_version: 1``,
``fully_shard`` for 2). accelerate shards only on accelerators: on a CPU-only machine it starts the processes but
prepares nothing, so there this script joins them in a gloo group and shards the model with the same torch classes,
as the config's ``fsdp_version`` says. Either way ``save_pretrained`` is called on every rank: archit gathers the full
weights, rank 0 writes them, and every rank returns once the checkpoint is complete.
"""
import argparse
import logging
import os

import torch
import torch.distributed as dist
from accelerate import Accelerator, FullyShardedDataParallelPlugin
from accelerate.utils import DistributedType, set_module_tensor_to_device
from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
from torch.distributed.fsdp.wrap import ModuleWrapPolicy
from transformers import RobertaConfig, RobertaModel

from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification

logger = logging.getLogger("train_fsdp")
STEPS, BATCH, LENGTH, LABELS = 5, 4, 16, 5


def shard_without_accelerators(model, fsdp_version: int):
    """What ``accelerator.prepare`` does on accelerators, with torch's classes on the CPU: rank 0's weights on every
    rank (a rank that loaded on the meta device, as under RAM-efficient loading, gets them), each encoder layer a unit
    of its own (``TRANSFORMER_BASED_WRAP``), the rest in the root's."""
    for name, tensor in model.state_dict(keep_vars=True).items():
        if tensor.is_meta:  # Only those: to_empty() would also empty the non-persistent buffers no broadcast fills.
            set_module_tensor_to_device(model, name, "cpu", value=torch.empty_like(tensor, device="cpu"))
    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)
    layers = model.base_model.encoder.layer
    if fsdp_version == 1:
        return FullyShardedDataParallel(model, auto_wrap_policy=ModuleWrapPolicy({type(layers[0])}),
                                        device_id=torch.device("cpu"))
    for layer in layers:
        fully_shard(layer)
    return fully_shard(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="fsdp-example", help="where to write the checkpoints")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    accelerator = Accelerator()
    sharded_by_accelerate = accelerator.distributed_type == DistributedType.FSDP
    if not sharded_by_accelerate and not dist.is_initialized():
        dist.init_process_group("gloo")
    rank = dist.get_rank()
    core_checkpoint = os.path.join(args.workdir, "roberta-core")
    if rank == 0:
        torch.manual_seed(0)
        RobertaModel(RobertaConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=128, max_position_embeddings=66)).save_pretrained(core_checkpoint)
    dist.barrier()

    torch.manual_seed(0)  # The new head: the same initial weights on every rank.
    model = ForSingleLabelTokenClassification.from_pretrained(core_checkpoint, RobertaBaseModel,
                                                              TokenClassificationHeadConfig(num_labels=LABELS))
    if sharded_by_accelerate:
        model = accelerator.prepare(model)
    else:
        model = shard_without_accelerators(model, FullyShardedDataParallelPlugin().fsdp_version)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(rank)  # Each rank its own batches, as a data-parallel loader gives them.
    for step in range(STEPS):
        input_ids = torch.randint(3, 1000, (BATCH, LENGTH), generator=generator)
        loss = model(input_ids=input_ids, labels=input_ids % LABELS).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        logger.info("rank %d, step %d: loss %.4f", rank, step, loss.item())

    model.eval()
    probe = torch.arange(3, 3 + LENGTH).unsqueeze(0)
    with torch.no_grad():
        logits = model(input_ids=probe).logits
    saved = os.path.join(args.workdir, "trained-tagger")
    unwrapped = accelerator.unwrap_model(model) if sharded_by_accelerate else getattr(model, "module", model)
    unwrapped.save_pretrained(saved, is_main_process=rank == 0)  # On every rank.

    if rank == 0:  # The checkpoint is complete: reload it in this process alone, unsharded.
        reloaded = ForSingleLabelTokenClassification.from_pretrained(saved, RobertaBaseModel).eval()
        with torch.no_grad():
            difference = (reloaded(input_ids=probe).logits - logits.cpu()).abs().max().item()
        logger.info("saved to %s; reloaded logits differ from the sharded model's by %.2e", saved, difference)
        if difference > 1e-5:
            raise SystemExit("the reloaded model does not compute what the trained one did")
    dist.barrier()
    # Before the interpreter exits: a gloo group still alive then can abort the process ("terminate called without
    # an active exception"), failing the launch after a complete run.
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
