"""Quick start: put a token-classification head on a RoBERTa checkpoint, with archit and with transformers, and check
that both give the same logits; save and reload the archit model; export it back to a transformers
``RobertaForTokenClassification`` and reload that in plain transformers. Builds its own small checkpoint (no model hub
needed).

    python examples/quickstart.py [--workdir DIR]
"""
import argparse
import logging
import os
import tempfile

import torch
from transformers import RobertaConfig, RobertaForTokenClassification

from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="where to write the checkpoints (default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    workdir = args.workdir or tempfile.mkdtemp(prefix="archit-quickstart-")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=66, num_labels=9)
    reference = RobertaForTokenClassification(config).eval()
    transformers_checkpoint = os.path.join(workdir, "roberta-token-classifier")
    reference.save_pretrained(transformers_checkpoint)

    model = ForSingleLabelTokenClassification.from_pretrained(
        transformers_checkpoint, RobertaBaseModel, TokenClassificationHeadConfig(num_labels=9))
    archit_checkpoint = os.path.join(workdir, "archit-token-classifier")
    model.save_pretrained(archit_checkpoint)
    reloaded = ForSingleLabelTokenClassification.from_pretrained(archit_checkpoint, RobertaBaseModel)
    exported_checkpoint = os.path.join(workdir, "exported-token-classifier")
    model.toHuggingFace().save_pretrained(exported_checkpoint)
    exported = RobertaForTokenClassification.from_pretrained(exported_checkpoint).eval()

    input_ids = torch.randint(3, 1000, (2, 12))
    attention_mask = torch.ones_like(input_ids)
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask).logits
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        reloaded_logits = reloaded(input_ids=input_ids, attention_mask=attention_mask).logits
        exported_logits = exported(input_ids=input_ids, attention_mask=attention_mask).logits
    difference = (logits - expected).abs().max().item()
    export_difference = (exported_logits - logits).abs().max().item()
    # The reloaded model has the same weights bit for bit, but computes on them where the checkpoint file is mapped
    # into memory, which on some CPUs rounds the last bit differently: compare within float32 tolerance (the defaults
    # of torch.testing.assert_close: rtol 1.3e-6, atol 1e-5).
    reload_same = torch.allclose(reloaded_logits, logits, rtol=1.3e-6, atol=1e-5)
    print(f"archit vs transformers, max |difference| of logits: {difference:.2e}")
    print(f"saved and reloaded archit model gives the same logits (within float32 tolerance): {reload_same}")
    print(f"exported to {type(exported).__name__} and reloaded by transformers, max |difference|: {export_difference:.2e}")
    print(f"checkpoints in {workdir}")
    if difference > 1e-5 or export_difference > 1e-5 or not reload_same:
        raise SystemExit("archit does not reproduce transformers' model: please report this.")


if __name__ == "__main__":
    main()
