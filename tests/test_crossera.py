"""Checkpoints archit wrote under other transformers versions (``tests/data/crossera/tf*/``, made by
``tests/data/make_crossera_fixtures.py``) load on this one: logits equal a reference computed from the checkpoint's
tensors with transformers' RobertaModel and torch.nn.functional, and equal the logits stored on the writing version."""
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers

from archit.instantiation.tasks import ForMaskedLM, ForSingleLabelTokenClassification

from tests.helpers import ARCHS, assert_close, load_archit, read_checkpoint_tensors, read_json

CROSSERA_DIR = Path(__file__).resolve().parent / "data" / "crossera"
FIXTURE_TASKS = ("token_classification", "masked_lm")
FOLDERS = sorted(p.parent for p in CROSSERA_DIR.glob("tf*/*/config.json"))


def test_fixtures_are_committed():
    versions = sorted(p.name for p in CROSSERA_DIR.glob("tf*") if p.is_dir())
    assert versions, f"no fixtures in {CROSSERA_DIR}; run tests/data/make_crossera_fixtures.py"
    for version in versions:
        for task in FIXTURE_TASKS:
            assert (CROSSERA_DIR / version / task / "inputs_and_logits.pt").is_file(), f"{version}/{task}"


def reference_logits(folder: Path, input_ids, attention_mask):
    """transformers' RobertaModel with the ``model._core.*`` tensors, then the head by hand from ``head.*``."""
    config = read_json(folder / "config.json")
    tensors = read_checkpoint_tensors(folder)
    base_config = transformers.RobertaConfig(**{**config["base_model_config"], "attn_implementation": "eager"})
    core = transformers.RobertaModel(base_config, add_pooling_layer=False).float().eval()
    prefix = "model._core."
    core.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    with torch.no_grad():
        hidden = core(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if folder.name == "token_classification":
            return F.linear(hidden, tensors["head.dense.weight"], tensors["head.dense.bias"])
        embedding = tensors[prefix + "embeddings.word_embeddings.weight"]
        if config["head_config"]["tie_weights"]:
            assert torch.equal(tensors.get("head.dense2.weight", embedding), embedding)
        decoder = embedding if config["head_config"]["tie_weights"] else tensors["head.dense2.weight"]
        x = F.gelu(F.linear(hidden, tensors["head.dense1.weight"], tensors["head.dense1.bias"]))
        x = F.layer_norm(x, (x.shape[-1],), tensors["head.layer_norm.weight"], tensors["head.layer_norm.bias"],
                         eps=1e-5)
        return F.linear(x, decoder, tensors["head.dense2.bias"])


@pytest.mark.parametrize("folder", FOLDERS, ids=[f"{p.parent.name}-{p.name}" for p in FOLDERS])
def test_crossera_checkpoint(folder):
    task = {"token_classification": ForSingleLabelTokenClassification, "masked_lm": ForMaskedLM}[folder.name]
    stored = torch.load(str(folder / "inputs_and_logits.pt"), weights_only=True)
    input_ids, attention_mask = stored["input_ids"], stored["attention_mask"]

    model = load_archit(task, folder, ARCHS["roberta"])
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    assert_close(logits, reference_logits(folder, input_ids, attention_mask))
    assert_close(logits, stored["logits"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("folder", FOLDERS, ids=[f"{p.parent.name}-{p.name}" for p in FOLDERS])
def test_loading_asks_transformers_nothing_deprecated(folder):
    """Configs written by 4.36-4.55 name the dtype ``torch_dtype``, which 4.56+ keep as a deprecated alias of ``dtype``
    that logs when read: archit reads such a checkpoint without a deprecation logged by transformers (which logs each
    message once per process, so the test forgets the earlier ones first)."""
    task = {"token_classification": ForSingleLabelTokenClassification, "masked_lm": ForMaskedLM}[folder.name]
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    transformers.utils.logging.warning_once.cache_clear()
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(handler)
    try:
        load_archit(task, folder, ARCHS["roberta"])
    finally:
        transformers_logger.removeHandler(handler)
    assert not [record.getMessage() for record in records if "deprecated" in record.getMessage().lower()]
