"""Write the cross-era fixtures for the installed transformers: ``tests/data/crossera/tf<major.minor>/<task>/``.

Each folder is an archit ``save_pretrained`` of a tiny seeded RoBERTa model with a head, plus ``inputs_and_logits.pt``
(input ids, attention mask and the logits this transformers version produced, eager attention, float32).
``tests/test_crossera.py`` loads every committed folder on whatever version runs the tests.

Usage, once per transformers version to cover (commit the output):
    PYTHONPATH=. HF_HUB_OFFLINE=1 python tests/data/make_crossera_fixtures.py
"""
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from packaging.version import Version

TESTS_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS_DIR.parent)]  # the repository root, whose tests/ package holds the helpers

from archit.instantiation.basemodels import RobertaBaseModel  # noqa: E402
from archit.instantiation.heads import MaskedLMHeadConfig, TokenClassificationHeadConfig  # noqa: E402
from archit.instantiation.tasks import ForMaskedLM, ForSingleLabelTokenClassification  # noqa: E402

from tests.helpers import make_inputs, perturb_, roberta_config, save_transformers_model  # noqa: E402

OUT_ROOT = TESTS_DIR / "data" / "crossera"


def fixture_tasks():
    """Folder name -> (task class, head config)."""
    return {
        "token_classification": (ForSingleLabelTokenClassification, TokenClassificationHeadConfig(num_labels=3)),
        "masked_lm": (ForMaskedLM, MaskedLMHeadConfig(tie_weights=True)),
    }


def main() -> Path:
    version = Version(transformers.__version__)
    out_dir = OUT_ROOT / f"tf{version.major}.{version.minor}"
    input_ids, attention_mask = make_inputs()
    with tempfile.TemporaryDirectory() as bare:
        save_transformers_model(transformers.RobertaModel, roberta_config(), Path(bare))
        for name, (task, head_config) in fixture_tasks().items():
            torch.manual_seed(0)
            model = task.from_pretrained(bare, RobertaBaseModel, head_config=head_config, attn_implementation="eager")
            perturb_(model.head, seed=1)  # no head weight keeps an init value (zero bias, LayerNorm ones)
            model.eval()
            with torch.no_grad():
                logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            folder = out_dir / name
            shutil.rmtree(folder, ignore_errors=True)
            model.save_pretrained(str(folder))
            torch.save({"input_ids": input_ids, "attention_mask": attention_mask, "logits": logits,
                        "transformers_version": transformers.__version__}, str(folder / "inputs_and_logits.pt"))
            print(f"wrote {folder}")
    return out_dir


if __name__ == "__main__":
    main()
