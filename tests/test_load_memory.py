"""A load gives back the memory of the weight-file pages it only read (``archit/loading/pages.py``): the sources of
tensors a conversion merges (transformers 5's fused experts) and tensors cast to another dtype. What a process holds
of a file's memory map is read from ``/proc/self/smaps`` (the kernel's count, independent of archit), so these tests
run on Linux only."""
import os
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file

from archit.instantiation.basemodels import AutoBaseModel, RobertaBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification
from archit.loading.pages import FilePages

from tests.helpers import TRANSFORMERS_VERSION, roberta_config, save_transformers_model

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")

TAGGER = TokenClassificationHeadConfig(num_labels=3)


def resident_bytes_of(path: Path) -> int:
    """How many bytes of ``path``'s memory maps are resident in this process (``Rss`` in ``/proc/self/smaps``)."""
    inode = str(os.stat(path).st_ino)
    total, inside = 0, False
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:  # A mapping's first line.
                inside = fields[4] == inode and len(fields) >= 6 and fields[5] == str(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


def test_release_gives_back_the_pages_of_a_view_and_keeps_its_values(tmp_path):
    """Touched pages of one tensor's view are resident; after ``release`` they are not, its neighbour's stay, and both
    read back the same values."""
    torch.manual_seed(0)
    tensors = {"a": torch.randn(256, 1024), "b": torch.randn(256, 1024)}  # 1 MiB each
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path))
    with safe_open(str(path), framework="pt") as handle:
        a, b = handle.get_tensor("a"), handle.get_tensor("b")
        a.sum(), b.sum()  # noqa: B018 -- touch every page of both
        before = resident_bytes_of(path)
        assert before >= 2 * 2**20
        FilePages(str(path)).release(a)
        after = resident_bytes_of(path)
        assert before - after >= 2**20 - 2 * 4096  # a's whole pages, all but the (at most two) it shares
        assert after >= 2**20  # b's stay
        assert torch.equal(a, tensors["a"]) and torch.equal(b, tensors["b"])


def test_release_of_a_tensor_not_in_the_file_touches_nothing(tmp_path):
    """A copy (not a view of the file's map) is left alone: its memory is not the file's."""
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.ones(256, 1024)}, str(path))
    copy = torch.full((256, 1024), 3.0)
    with safe_open(str(path), framework="pt") as handle:
        handle.get_tensor("a")
        FilePages(str(path)).release(copy)
    assert torch.equal(copy, torch.full((256, 1024), 3.0))


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_what_is_read_into_a_copy_is_given_back_and_views_are_not(dtype, tmp_path, monkeypatch):
    """Loading a float32 checkpoint as bfloat16 reads every tensor into a copy: each one's pages are given back (while
    the load goes on, the file still mapped); loaded as float32, every tensor is a view of the file, none given back."""
    folder = tmp_path / "ckpt"
    save_transformers_model(transformers.RobertaModel, roberta_config(hidden_size=256, intermediate_size=1024), folder)
    path = folder / "model.safetensors"
    released = []
    release = FilePages.release
    monkeypatch.setattr(FilePages, "release", lambda self, tensor: (released.append(tensor.nbytes),
                                                                   release(self, tensor)))
    model, info = ForSingleLabelTokenClassification.from_pretrained(str(folder), RobertaBaseModel, TAGGER, dtype=dtype,
                                                                    output_loading_info=True)
    assert model.model.base_model.embeddings.word_embeddings.weight.dtype == (dtype or torch.float32)
    with safe_open(str(path), framework="pt") as handle:  # The pooler's tensors are not read: the tagger has none.
        stored = [handle.get_tensor(key).nbytes for key in handle.keys() if key not in info["unexpected_keys"]]
    assert sorted(released) == (sorted(stored) if dtype is not None else [])


def test_merged_experts_leave_no_source_pages_resident(tmp_path):
    """transformers 5 fuses per-expert tensors at load: the per-expert pages read for it are given back, while the
    tensors loaded as views of the file stay as they are."""
    if TRANSFORMERS_VERSION.major < 5:
        pytest.skip("transformers 4 loads experts per expert, as views of the file")
    config = transformers.MixtralConfig(vocab_size=64, hidden_size=128, intermediate_size=512, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                                        num_experts_per_tok=2, max_position_embeddings=32)
    folder = tmp_path / "ckpt"
    save_transformers_model(transformers.MixtralModel, config, folder)
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        expert_keys = [key for key in handle.keys() if ".experts." in key]
        expert_bytes = sum(handle.get_tensor(key).nbytes for key in expert_keys)
    assert any(".experts.0.w1." in key for key in expert_keys), "not the 4.x per-expert layout this test is about"
    model = ForSingleLabelTokenClassification.from_pretrained(str(folder), AutoBaseModel, TAGGER,
                                                              attn_implementation="eager")
    assert model is not None
    assert resident_bytes_of(path) < expert_bytes / 8, "the per-expert pages read for fusing stayed resident"
