"""``archit matrix`` end to end, as a user runs it: environments made with uv for real transformers releases (4.57 and
5.23; 4.36 for the across-saves grid) and one that does not exist, a task class of the user's own (``mytasks:Tagger``
from the current folder), and the JSON, Markdown and HTML read back for content: transformers' own class with each
release's defaults on a checkpoint whose defaults changed (bfloat16: 4.x loads float32, 5.x the stored dtype), and a
save broken on one release (the test's own task renames two keys when saving there) found in the saved-on x loaded-on
grid. One environment cache for the module, releases run two at a time (``--jobs 2``). Slow (it builds environments):
``nox -s matrix`` runs it."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch
import transformers
from safetensors.torch import load_file

from archit.cli.matrix_report import COLOURS
from archit.cli.matrix_worker import fixed_inputs
from archit.instantiation.tasks import ForSingleLabelTokenClassification

from tests.helpers import (
    assert_same_outputs,
    build_transformers_model,
    roberta_config,
    save_transformers_model,
    transformers_dtype_kwargs,
)

pytestmark = pytest.mark.slow

RELEASES = ("4.57", "5.23")
BOGUS = "4.99.0"


def run_matrix(cwd, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "archit", "matrix", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=1800)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("matrix-cache")


def test_a_bogus_release_is_refused_up_front_then_two_releases_are_the_same(tmp_path, cache):
    """A release the index lacks is refused before any environment is made (exit 2, the nearest ones named, nothing
    written); without it, 4.57 and 5.23 give transformers' own logits."""
    save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=4), tmp_path / "ckpt")
    (tmp_path / "mytasks.py").write_text("from archit.instantiation.tasks import ForSingleLabelTokenClassification\n\n"
                                         "class Tagger(ForSingleLabelTokenClassification):\n    pass\n")
    arguments = ("ckpt", "--base", "RobertaBaseModel", "--task", "mytasks:Tagger", "--head-config", '{"num_labels": 4}',
                 "--out", "out", "--cache-dir", cache, "--jobs", "2")
    refused = run_matrix(tmp_path, *arguments, "--transformers", *RELEASES, BOGUS)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stdout == "" and re.fullmatch(r"archit: error: transformers 4\.99\.0 is not on the package index; "
                                                 r"the nearest are 4\.57\.\d+, 5\.0\.0\.\n", refused.stderr)
    assert list(cache.iterdir()) == [] and not (tmp_path / "out").exists()

    done = run_matrix(tmp_path, *arguments, "--transformers", *RELEASES)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    progress = [line for line in lines if line.startswith("transformers ")]
    assert sorted(line.split()[1][:4] for line in progress) == ["4.57", "5.23"]
    assert lines[-1].startswith("same outputs on all 2 releases")

    rows = json.loads((tmp_path / "out" / "matrix.json").read_text())
    assert [row["release"][:4] for row in rows] == ["4.57", "5.23"]
    old, new = rows
    assert old["transformers"].startswith("4.57.") and new["transformers"].startswith("5.23.")
    assert (old["era"], new["era"]) == ("4.50", "5.0") and old["torch"] == new["torch"] == torch.__version__
    for good in (old, new):
        assert good["ok"] and good["status"] == "same" and good["error"] is None and good["load_seconds"] > 0
        assert good["reference"] == new["transformers"] and good["max_abs_diff"] <= 1e-5
        assert good["initialised"] == good["unused"] == good["converted"] == [] and good["reload_max_abs_diff"] == 0
        assert good["counts"] == {"initialised": 0, "unused": 0, "converted": 0}
    # The logits each release saved are transformers' own (the checkpoint is a RobertaForTokenClassification).
    reference = transformers.RobertaForTokenClassification.from_pretrained(str(tmp_path / "ckpt"),
                                                                           attn_implementation="eager").eval()
    with torch.no_grad():
        expected = reference(**fixed_inputs(ForSingleLabelTokenClassification, 99)).logits
    for good in (old, new):
        assert_same_outputs(load_file(str(tmp_path / "out" / good["logits_file"]))["logits"], expected)

    markdown = (tmp_path / "out" / "matrix.md").read_text()
    assert f"| {old['transformers']} | 4.50 | same | {_diff(old)} |" in markdown
    assert f"| {new['transformers']} (reference) | 5.0 | same | 0 |" in markdown
    assert "First failing release: none." in markdown

    page = (tmp_path / "out" / "matrix.html").read_text()
    assert page.count('<td class="same"') == 2 and '<td class="fails"' not in page
    assert f"background: {COLOURS['same']}" in page
    assert '<td>first failing</td><td></td><td>none</td>' in page and "http" not in page


def test_two_probes_are_two_columns_with_cached_environments(tmp_path, cache):
    """--probes: one column per checkpoint; the environments of the first test are reused (the cache)."""
    save_transformers_model(transformers.RobertaForMaskedLM, roberta_config(), tmp_path / "mlm")
    save_transformers_model(transformers.RobertaForQuestionAnswering, roberta_config(), tmp_path / "qa")
    (tmp_path / "probes.json").write_text(json.dumps([
        {"name": "mlm", "checkpoint": "mlm", "base": "RobertaBaseModel", "task": "ForMaskedLM"},
        {"name": "qa", "checkpoint": "qa", "base": "RobertaBaseModel", "task": "ForExtractiveQA"}]))
    done = run_matrix(tmp_path, "--probes", "probes.json", "--transformers", *RELEASES, "--out", "out", "--cache-dir",
                      cache, "--reference", RELEASES[0], "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "env cached" in done.stdout and "env made" not in done.stdout
    rows = json.loads((tmp_path / "out" / "matrix.json").read_text())
    assert sorted((row["release"][:4], row["probe"], row["status"]) for row in rows) == [
        ("4.57", "mlm", "same"), ("4.57", "qa", "same"), ("5.23", "mlm", "same"), ("5.23", "qa", "same")]
    assert all(row["reference"].startswith("4.57.") for row in rows)
    page = (tmp_path / "out" / "matrix.html").read_text()
    assert "<th><span>mlm</span></th><th><span>qa</span></th>" in page and page.count('<td class="same"') == 4
    assert '<td>first failing</td><td></td><td>none</td><td>none</td>' in page
    assert "| first failing | | none | none |" in (tmp_path / "out" / "matrix.md").read_text()


def _diff(row) -> str:
    value = row["max_abs_diff"]
    return "0" if value == 0 else f"{value:.2g}"


def test_transformers_class_with_defaults_names_the_release_whose_defaults_changed(tmp_path, cache):
    """A bfloat16 token classifier, transformers' own class (``auto``), each release's defaults next to the pinned load,
    4.57 the reference: 4.57's plain from_pretrained loads float32, 5.23's the stored bfloat16 (checked here against
    transformers' own model in bfloat16), so the defaults differ on 5.23 while the pinned loads are the same."""
    model = build_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=3))
    model.to(torch.bfloat16).save_pretrained(str(tmp_path / "bf16"))
    done = run_matrix(tmp_path, "bf16", "--transformers-class", "auto", "--defaults", "--transformers", *RELEASES,
                      "--reference", RELEASES[0], "--out", "out", "--cache-dir", cache, "--jobs", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    rows = json.loads((tmp_path / "out" / "matrix.json").read_text())
    assert [(row["release"][:4], row["mode"]) for row in rows] == [("4.57", "pinned"), ("4.57", "defaults"),
                                                                    ("5.23", "pinned"), ("5.23", "defaults")]
    old_pinned, old_defaults, new_pinned, new_defaults = rows
    for row in rows:
        assert (row["loader"], row["transformers_class"]) == ("transformers", "RobertaForTokenClassification")
    assert old_pinned["status"] == new_pinned["status"] == "same" and new_pinned["max_abs_diff"] <= 1e-5
    assert (old_pinned["dtype"], new_pinned["dtype"], new_pinned["attn_implementation"]) == ("float32",) * 2 + ("eager",)
    assert (old_defaults["dtype"], new_defaults["dtype"]) == ("float32", "bfloat16")
    assert old_defaults["status"] == "same" and new_defaults["status"] == "differs"
    assert old_defaults["pinned_max_abs_diff"] <= 1e-5 < new_defaults["pinned_max_abs_diff"]
    # 5.23's defaults logits are transformers' own model run in bfloat16 here (upcast to float32).
    inputs = fixed_inputs(ForSingleLabelTokenClassification, 99)
    with torch.no_grad():
        expected = transformers.RobertaForTokenClassification.from_pretrained(
            str(tmp_path / "bf16"), attn_implementation=new_defaults["attn_implementation"],
            **transformers_dtype_kwargs(torch.bfloat16)).eval()(**inputs).logits.float()
    assert_same_outputs(load_file(str(tmp_path / "out" / new_defaults["logits_file"]))["logits"], expected)
    new = new_defaults["transformers"]
    diagnosis = f"differs with defaults, same when pinned: first on {new}"
    assert diagnosis in done.stdout.splitlines()[-1]
    assert f"Diagnosis: {diagnosis}" in (tmp_path / "out" / "matrix.md").read_text()
    assert f'<p class="broken">Diagnosis: {diagnosis}' in (tmp_path / "out" / "matrix.html").read_text()


BROKEN_TAGGER = """import transformers
from archit.instantiation.tasks import ForSingleLabelTokenClassification

BROKEN_ON = {broken!r}


class Tagger(ForSingleLabelTokenClassification):
    \"\"\"Saves like archit, but on BROKEN_ON with layer 0's attention query and key tensors swapped by name: a save
    that every release loads without a word and that computes something else.\"\"\"

    def save_pretrained(self, save_directory, **kwargs):
        if transformers.__version__.startswith(BROKEN_ON):
            swap = {{".layer.0.attention.self.query.": ".layer.0.attention.self.key.",
                     ".layer.0.attention.self.key.": ".layer.0.attention.self.query."}}
            state = {{}}
            for name, tensor in self.state_dict().items():
                for old, new in swap.items():
                    if old in name:
                        name = name.replace(old, new)
                        break
                state[name] = tensor
            kwargs["state_dict"] = state
        super().save_pretrained(save_directory, **kwargs)
"""


def test_across_saves_finds_the_release_whose_saves_others_misread(tmp_path, cache):
    """Three releases spanning the eras save the checkpoint and load every save; the save written on 4.57 (the test's
    own task swaps two keys there) is misread everywhere, and that pair is named in the JSON, the Markdown, the HTML
    and the last line."""
    save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=4), tmp_path / "ckpt")
    (tmp_path / "mytasks.py").write_text(BROKEN_TAGGER.format(broken="4.57."))
    labels = ("4.36", *RELEASES)
    done = run_matrix(tmp_path, "ckpt", "--base", "RobertaBaseModel", "--task", "mytasks:Tagger", "--head-config",
                      '{"num_labels": 4}', "--across-saves", "--transformers", *labels, "--out", "out",
                      "--cache-dir", cache, "--jobs", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    rows = json.loads((tmp_path / "out" / "matrix.json").read_text())
    original = [row for row in rows if row["saved_on"] is None]
    grid = [row for row in rows if row["saved_on"] is not None]
    versions = [row["transformers"] for row in original]
    assert [version[:4] for version in versions] == ["4.36", "4.57", "5.23"]
    assert [(row["saved_on"][:4], row["loaded_on"][:4]) for row in grid] == [
        (saved[:4], loaded[:4]) for saved in labels for loaded in labels]
    for row in grid:  # the broken save computes something else everywhere; every other save is read the same
        assert row["status"] == ("differs" if row["saved_on"].startswith("4.57") else "same"), row
        assert row["reference"] == versions[-1]
    assert original[1]["status"] == "fails" and "save and reload change the logits" in original[1]["error"]
    assert original[0]["status"] == original[2]["status"] == "same"
    assert original[0]["probe"] == f"{tmp_path.name}/ckpt"  # the title: "ckpt" alone is a generic name
    assert (tmp_path / "out" / "saves" / grid[0]["saved_on"] / f"{tmp_path.name}--ckpt" / "config.json").exists()
    pair = f"first broken pair: saved on {versions[1]}, loaded on {versions[0]}"
    assert done.stdout.splitlines()[-1].endswith(pair + ".")
    markdown = (tmp_path / "out" / "matrix.md").read_text()
    assert pair.capitalize() + "." in markdown
    assert f"| **{versions[1]}** | **differs (" in markdown
    page = (tmp_path / "out" / "matrix.html").read_text()
    assert f'<p class="broken">{pair.capitalize()}</p>' in page and "http" not in page
    assert f'<tr class="first-broken"><th>{versions[1]}</th><td class="differs first-broken"' in page
    assert page.count('<td class="differs') == 3 and page.count('<td class="same"') >= 6
