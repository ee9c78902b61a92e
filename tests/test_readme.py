"""The README's usage examples run as printed, in order, in a fresh folder."""
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run_verbatim(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    runnable = [b for b in blocks if "import" in b]  # The one-line teaser at the top is not a program.
    assert len(runnable) >= 3, "README lost its usage examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in runnable:
        exec(compile(block, str(README), "exec"), namespace)

    model = namespace["model_with_head"]  # From the last example: loaded from the local checkpoint.
    stored = load_file(tmp_path / "path/to/core-checkpoint/model.safetensors")
    for key, tensor in model.base_model.state_dict().items():
        if key in stored:
            assert torch.equal(tensor, stored[key]), key
    assert set(model.base_model.state_dict()) - set(stored) <= {"embeddings.position_ids", "embeddings.token_type_ids"}
