"""``archit matrix`` end to end, as a user runs it: environments made with uv for two real transformers releases (4.57
and 5.23) and one that does not exist, a task class of the user's own (``mytasks:Tagger`` from the current folder), and
the JSON, Markdown and HTML read back for content. Slow (it builds environments): ``nox -s matrix`` runs it."""
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

from tests.helpers import assert_same_outputs, roberta_config, save_transformers_model

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


def test_two_releases_the_same_and_a_bogus_one_failing(tmp_path, cache):
    save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=4), tmp_path / "ckpt")
    (tmp_path / "mytasks.py").write_text("from archit.instantiation.tasks import ForSingleLabelTokenClassification\n\n"
                                         "class Tagger(ForSingleLabelTokenClassification):\n    pass\n")
    done = run_matrix(tmp_path, "ckpt", "--base", "RobertaBaseModel", "--task", "mytasks:Tagger", "--head-config",
                      '{"num_labels": 4}', "--transformers", *RELEASES, BOGUS, "--out", "out", "--cache-dir", cache)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    progress = [line for line in lines if line.startswith("transformers ")]
    assert [line.split()[1] for line in progress][0].startswith("5.23.") and len(progress) == 3
    assert re.search(r"^transformers 4\.99\.0 .*fails: environment: Because there is no version of "
                     r"transformers==4\.99\.0", "\n".join(progress), re.MULTILINE)
    assert lines[-1].startswith("NOT THE SAME: fails on 4.99.0") and "4.57" not in lines[-1]

    rows = json.loads((tmp_path / "out" / "matrix.json").read_text())
    assert [row["release"][:4] for row in rows] == ["4.57", "4.99", "5.23"]
    old, bogus, new = rows
    assert old["transformers"].startswith("4.57.") and new["transformers"].startswith("5.23.")
    assert (old["era"], new["era"]) == ("4.50", "5.0") and old["torch"] == new["torch"] == torch.__version__
    for good in (old, new):
        assert good["ok"] and good["status"] == "same" and good["error"] is None and good["load_seconds"] > 0
        assert good["reference"] == new["transformers"] and good["max_abs_diff"] <= 1e-5
        assert good["initialised"] == good["unused"] == good["converted"] == [] and good["reload_max_abs_diff"] == 0
        assert good["counts"] == {"initialised": 0, "unused": 0, "converted": 0}
    assert not bogus["ok"] and bogus["status"] == "fails" and bogus["max_abs_diff"] is None
    assert "Because there is no version of transformers==4.99.0" in bogus["error"]
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
    assert "| 4.99.0 | – | fails | – |" in markdown and "First failing release: 4.99.0." in markdown

    page = (tmp_path / "out" / "matrix.html").read_text()
    assert page.count('<td class="same"') == 2 and page.count('<td class="fails"') == 1
    assert f"background: {COLOURS['same']}" in page and f"background: {COLOURS['fails']}" in page
    assert '<td>first failing</td><td></td><td>4.99.0</td>' in page and "http" not in page


def test_two_probes_are_two_columns_with_cached_environments(tmp_path, cache):
    """--probes: one column per checkpoint; the environments of the first test are reused (the cache)."""
    save_transformers_model(transformers.RobertaForMaskedLM, roberta_config(), tmp_path / "mlm")
    save_transformers_model(transformers.RobertaForQuestionAnswering, roberta_config(), tmp_path / "qa")
    (tmp_path / "probes.json").write_text(json.dumps([
        {"name": "mlm", "checkpoint": "mlm", "base": "RobertaBaseModel", "task": "ForMaskedLM"},
        {"name": "qa", "checkpoint": "qa", "base": "RobertaBaseModel", "task": "ForExtractiveQA"}]))
    done = run_matrix(tmp_path, "--probes", "probes.json", "--transformers", *RELEASES, "--out", "out", "--cache-dir",
                      cache, "--reference", RELEASES[0])
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
