"""Port of the published ArchIt's ``tst/test_diff.py`` (github.com/bauwenst/ArchIt, release v2026.04.01, commit
acd05bb5ab82d185ae9d435ab0f94ac0e82e1b0a; the file is identical at HEAD cba77a4ced401f080ca2348189b3f35f0b75b40e).

What changed, and nothing else:
- ``RobertaForMaskedLM.from_pretrained("roberta-base")`` loads a tiny local RoBERTa masked-LM checkpoint instead
  (``published_helpers.make_tiny_roberta_base``, written into the test's ``tmp_path``): there is no hub here. Each test
  therefore takes pytest's ``tmp_path`` fixture as its one argument.
- ``HF_HUB_OFFLINE=1`` is set before transformers is imported.
- The ``if __name__ == "__main__":`` block at the end (it ran ``test_modulelist()``) is left out; pytest runs all three.
- Imports sorted for ruff.
- ``test_module`` and ``test_modulelist`` are marked ``xfail(strict=True, raises=TypeError)``: they assign an instance
  of a plain class (``DummyModule``, not a ``torch.nn.Module``) in place of a child module, which torch refuses with a
  TypeError on the test's own line, before archit is reached (the same with every torch release, and so with the
  published ArchIt too). Their bodies are unchanged.
The tests have no assertions in the original (they only print); they pass when nothing raises.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from transformers import RobertaForMaskedLM  # noqa: E402

from archit import printDifference  # noqa: E402

from tests.published.published_helpers import make_tiny_roberta_base  # noqa: E402

# The test's own bug, not archit's: ``DummyModule`` is a plain class, not a ``torch.nn.Module``, and
# ``torch.nn.Module.__setattr__`` (every torch release; ``ModuleList.__setitem__`` goes through it) raises TypeError
# when anything but a Module or None is assigned to the name of an existing child module.
NOT_A_MODULE_XFAIL = pytest.mark.xfail(strict=True, raises=TypeError, reason=(
    "the test's own bug: it assigns a DummyModule, a plain class and not a torch.nn.Module, in place of a child module "
    "(model.roberta.embeddings / model.roberta.encoder.layer[4]); torch.nn.Module.__setattr__ raises TypeError "
    "('cannot assign ... as child module ... (torch.nn.Module or None expected)') on the test's own line, before "
    "archit's printDifference is called"))


def test_none(tmp_path):
    model: RobertaForMaskedLM = RobertaForMaskedLM.from_pretrained(make_tiny_roberta_base(tmp_path / "roberta-base"))
    model.roberta.embeddings = None

    printDifference(model, RobertaForMaskedLM)


@NOT_A_MODULE_XFAIL
def test_module(tmp_path):
    class DummyModule:
        pass

    model: RobertaForMaskedLM = RobertaForMaskedLM.from_pretrained(make_tiny_roberta_base(tmp_path / "roberta-base"))
    model.roberta.embeddings = DummyModule()

    printDifference(model, RobertaForMaskedLM)


@NOT_A_MODULE_XFAIL
def test_modulelist(tmp_path):
    class DummyModule:
        pass

    model: RobertaForMaskedLM = RobertaForMaskedLM.from_pretrained(make_tiny_roberta_base(tmp_path / "roberta-base"))
    model.roberta.encoder.layer[4] = DummyModule()

    printDifference(model, RobertaForMaskedLM)
