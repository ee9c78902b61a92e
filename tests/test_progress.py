"""Loading and saving many or large tensors show transformers' progress bar, on a terminal only, and not when
transformers' progress bars are disabled."""
import io

import pytest
from transformers.utils import logging as transformers_logging

from archit._compat import all_eras
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification

from tests.helpers import ARCHS, load_archit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def load_and_save(checkpoint, tmp_path):
    model = load_archit(ForSingleLabelTokenClassification, checkpoint, ARCHS["roberta"],
                        head_config=TokenClassificationHeadConfig(num_labels=3))
    model.save_pretrained(str(tmp_path / "saved"))


@pytest.fixture
def every_load_is_big(monkeypatch):
    monkeypatch.setattr(all_eras, "PROGRESS_MIN_TENSORS", 1)


@pytest.mark.parametrize("stream, shown", [(Terminal, True), (Log, False)], ids=["terminal", "log"])
def test_big_loads_and_saves_show_a_bar_on_a_terminal(roberta_bare, tmp_path, monkeypatch, every_load_is_big,
                                                       stream, shown):
    stderr = stream()
    monkeypatch.setattr("sys.stderr", stderr)
    load_and_save(roberta_bare, tmp_path)
    assert ("Loading weights" in stderr.getvalue()) is shown
    assert ("Writing model shards" in stderr.getvalue()) is shown


def test_no_bar_when_transformers_bars_are_disabled(roberta_bare, tmp_path, monkeypatch, every_load_is_big):
    stderr = Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        load_and_save(roberta_bare, tmp_path)
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()
    assert "Loading weights" not in stderr.getvalue()


def test_small_loads_show_no_bar(roberta_bare, tmp_path, monkeypatch):
    stderr = Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    load_and_save(roberta_bare, tmp_path)
    assert "Loading weights" not in stderr.getvalue()
