"""The pytest fixtures shared by the test files; the helpers they are built on (tiny configs, ``ARCHS``, models, inputs,
checkpoints, assertions) are in ``tests/helpers.py``.

Every checkpoint is written by the test itself (``save_pretrained`` or ``torch.save``/``save_file``) into a temporary
folder; nothing comes from the network (``HF_HUB_OFFLINE=1``, set below before transformers is imported). The whole
run computes on one thread (set below, at import): tiny models run several times faster on one thread than on a few
contended ones. Code that checkpoints ship (``trust_remote_code``) is copied by transformers into
``HF_MODULES_CACHE``, set below to a folder of this run, removed at its end: one folder for every test, so that no
test imports another's ``transformers_modules`` package, and nothing is written to ``~/.cache/huggingface``.
"""
import atexit
import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
# Before transformers is imported: it reads the variable once. Subprocesses of the tests inherit it.
os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="archit-tests-hf-modules-")

from pathlib import Path
from typing import Dict

import pytest
import torch

from tests.helpers import ARCHS, Arch, save_transformers_model

atexit.register(shutil.rmtree, os.environ["HF_MODULES_CACHE"], ignore_errors=True)

# One thread for the whole run, a plain ``pytest`` as much as a nox session (which also sets OMP_NUM_THREADS=1): on
# 2 cores the suite takes a fraction of the time it takes multi-threaded.
torch.set_num_threads(1)


@pytest.fixture(params=sorted(ARCHS))
def arch(request) -> Arch:
    return ARCHS[request.param]


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints reused by many tests (read-only: tests must never write into them).

@pytest.fixture(scope="session")
def bare_checkpoints(tmp_path_factory) -> Dict[str, Path]:
    """One bare base-model checkpoint (``RobertaModel(cfg).save_pretrained``, keys ``embeddings.*``) per arch."""
    out = {}
    for name, a in ARCHS.items():
        directory = tmp_path_factory.mktemp(f"bare-{name}")
        save_transformers_model(a.core, a.make_config(), directory)
        out[name] = directory
    return out


@pytest.fixture
def bare_checkpoint(arch, bare_checkpoints) -> Path:
    return bare_checkpoints[arch.name]


@pytest.fixture(scope="session")
def roberta_bare(bare_checkpoints) -> Path:
    return bare_checkpoints["roberta"]


@pytest.fixture(scope="session")
def gpt2_bare(bare_checkpoints) -> Path:
    return bare_checkpoints["gpt2"]
