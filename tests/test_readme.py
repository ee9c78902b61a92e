"""The README's usage examples run as printed, in order, in a fresh folder, as one user script would."""
import re
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import RobertaForMaskedLM

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run_verbatim(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    runnable = [b for b in blocks if "import" in b]  # The one-line teaser at the top is not a program.
    loading = next(b for b in runnable if ".from_pretrained(\n    \"path/to/core-checkpoint\"" in b)
    declaring = next(b for b in runnable if "printDifference(" in b)
    exporting = next(b for b in runnable if ".toHuggingFace()" in b)
    monkeypatch.chdir(tmp_path)
    script = types.ModuleType("readme_script")  # Importable, so that printed code can import its classes.
    monkeypatch.setitem(sys.modules, "readme_script", script)
    for block in runnable:
        capsys.readouterr()
        exec(compile(block, str(README), "exec"), script.__dict__)
        if block is loading:
            _check_loaded_from_checkpoint(script.model_with_head, tmp_path / "path/to/core-checkpoint")
        if block is declaring:
            _check_declaration(capsys.readouterr().out, script.model_with_head, tmp_path)
        if block is exporting:
            _check_export(script.mlm, tmp_path / "path/to/roberta-mlm")


def _check_loaded_from_checkpoint(model, checkpoint: Path) -> None:
    stored = load_file(checkpoint / "model.safetensors")
    for key, tensor in model.base_model.state_dict().items():
        if key in stored:
            assert torch.equal(tensor, stored[key]), key
    assert set(model.base_model.state_dict()) - set(stored) <= {"embeddings.position_ids", "embeddings.token_type_ids"}


def _check_export(archit_model, folder: Path) -> None:
    """The exported folder is a RobertaForMaskedLM that plain transformers loads, with the archit model's encoder."""
    reloaded = RobertaForMaskedLM.from_pretrained(str(folder))
    for key, tensor in archit_model.base_model.state_dict().items():
        assert torch.equal(reloaded.roberta.state_dict()[key], tensor), key


def _check_declaration(printed: str, modified, tmp_path: Path) -> None:
    assert re.findall(r"^class (\w+)\(", printed, flags=re.M) == [
        "RobertaEmbeddingsModified", "RobertaModelModified", "RobertaForMaskedLMModified"]
    namespace: dict = {}
    exec(compile(printed, str(tmp_path / "printed.py"), "exec"), namespace)
    rebuilt = namespace["RobertaForMaskedLMModified"](modified.config)
    result = rebuilt.load_state_dict(modified.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert type(rebuilt.roberta.embeddings.word_embeddings) is type(modified.roberta.embeddings.word_embeddings)
