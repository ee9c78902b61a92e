"""Every code block of the README runs as printed, or, where running it takes too long for the default run, is checked
against what it names. Which block is which is decided in one place, ``tests/readme_blocks.py``, by the block's
language and each command's own words, never by position; a block or command it does not know fails
``test_every_block_is_known_and_counted``.

- ``python`` blocks run in README order in one folder (so a block may read what an earlier one wrote), each in a fresh
  namespace (so each has its own imports), and some are checked against transformers or the files they wrote.
- ``archit inspect/verify/export`` commands of console blocks run in that folder, in the same order, after the python
  block before them, and print what the README shows; ``python examples/...`` runs.
- set-up installs, ``nox`` command lines (the blocks' and the prose's), ``archit matrix`` and ``accelerate launch``
  command lines are checked against the noxfile, archit's argument parser, accelerate's and the repository's files;
  ``archit matrix`` examples run for real in the slow session (``nox -s matrix``), the ``accelerate launch`` ones in
  the distributed sessions (``nox -t distributed``).
"""
import argparse
import ast
import contextlib
import difflib
import importlib.util
import io
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import pytest
import torch
from packaging.requirements import Requirement
from safetensors.torch import load_file
from transformers import RobertaForMaskedLM

from archit.cli import releases
from archit.cli.main import _parser as archit_parser
from archit.cli.main import main as archit_main

from tests import readme_blocks as rb
from tests.helpers import roberta_config

ROOT = rb.README.parent
README_TEXT = rb.README.read_text(encoding="utf-8")
HANDLED_COMMAND_KINDS = {"pip-install", "example", "nox", "archit-run", "archit-matrix", "accelerate-launch"}


def _params(kind: str) -> list:
    return [pytest.param(command, id=command.id) for command in rb.all_commands(kind)]


# ---------------------------------------------------------------------------------------------------------------------
# Every block known, none lost by the parser.

def test_every_block_is_known_and_counted():
    blocks = rb.all_blocks()
    assert 2 * len(blocks) == rb.fence_lines(README_TEXT), "a fence the block parser skipped"
    assert sum(b.language == "python" for b in blocks) == README_TEXT.count("\n```python\n")
    kinds = {block.where: rb.block_kind(block) for block in blocks}  # raises UnknownBlock on a block it cannot run
    assert set(kinds.values()) <= set(rb.BLOCK_KINDS)
    command_kinds = [rb.command_kind(c) for b in blocks if kinds[b.where] == "commands" for c in rb.commands(b)]
    assert set(rb.COMMAND_KINDS) == HANDLED_COMMAND_KINDS, "a command kind without a test in tests/test_readme.py"
    # Each kind of command the README has is there (a README rewrite that drops all of one kind is noticed).
    assert set(command_kinds) == HANDLED_COMMAND_KINDS, set(command_kinds) ^ HANDLED_COMMAND_KINDS


def test_the_classification_refuses_what_it_does_not_know():
    with pytest.raises(rb.UnknownBlock):
        rb.block_kind(rb.Block("yaml", "a: 1\n", 1))
    with pytest.raises(rb.UnknownBlock):
        rb.command_kind(rb.commands(rb.Block("shell", "make all\n", 1))[0])
    (first, second), = [rb.commands(rb.Block("shell", "pip install nox uv && nox -t lint\n", 1))]
    assert first.argv == ("pip", "install", "nox", "uv") and second.argv == ("nox", "-t", "lint")
    console = rb.commands(rb.Block("console", "$ archit inspect a\nline 1\nline 2\n$ archit verify a\n", 1))
    assert [(c.argv[1], c.output) for c in console] == [("inspect", ("line 1", "line 2")), ("verify", ())]
    assert rb.read_blocks("x\n```python\nprint(1)\n```\n```\na/\n```\n") == [
        rb.Block("python", "print(1)\n", 2), rb.Block("", "a/\n", 5)]


# ---------------------------------------------------------------------------------------------------------------------
# The runnable blocks, in README order.

class _Checks:
    """Checks of what a python block made, keyed on a piece of the block's text that must occur in exactly one block."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.by_marker: Dict[str, Callable[[dict, str], None]] = {
            "from_pretrained(checkpoint, RobertaBaseModel, TokenClassificationHeadConfig(num_labels=9))": self.teaser,
            '.from_pretrained(\n    "path/to/core-checkpoint"': self.loading,
            "printDifference(model_with_head": self.declaration,
            "hf_mlm = mlm.toHuggingFace()": self.export,
            "trust_remote_code=True)": self.remote_code,
            "def archit_checksum(path)": self.checksum,
        }
        self.used: Dict[str, int] = {}

    def for_block(self, text: str) -> List[Callable[[dict, str], None]]:
        found = [marker for marker in self.by_marker if marker in text]
        for marker in found:
            self.used[marker] = self.used.get(marker, 0) + 1
        return [self.by_marker[m] for m in found]

    def teaser(self, namespace: dict, printed: str) -> None:
        _check_loaded_from_checkpoint(namespace["tagger"], self.tmp / namespace["checkpoint"])
        assert namespace["tagger"].head.dense.out_features == 9

    def loading(self, namespace: dict, printed: str) -> None:
        _check_loaded_from_checkpoint(namespace["model_with_head"], self.tmp / "path/to/core-checkpoint")

    def declaration(self, namespace: dict, printed: str) -> None:
        _check_declaration(printed, namespace["model_with_head"], self.tmp)

    def export(self, namespace: dict, printed: str) -> None:
        _check_export(namespace["mlm"], self.tmp / "path/to/roberta-mlm")

    def remote_code(self, namespace: dict, printed: str) -> None:
        """The body is the checkpoint's own class, holding its weights, and the save carries the code along."""
        tagger = namespace["tagger"]
        body = tagger.base_model
        assert type(body).__name__ == "XModel" and type(body).__module__.endswith(".modeling_x"), type(body)
        stored = load_file(str(self.tmp / "path/to/checkpoint-with-code/model.safetensors"))
        for key, tensor in body.state_dict().items():
            if key in stored:
                assert torch.equal(tensor, stored[key]), key
        saved = self.tmp / "path/to/tagger-with-code"
        assert {"configuration_x.py", "modeling_x.py"} <= {p.name for p in saved.iterdir()}
        stored_config = json.loads((saved / "config.json").read_text())["base_model_config"]
        assert stored_config["auto_map"]["AutoModel"] == "modeling_x.XModel"

    def checksum(self, namespace: dict, printed: str) -> None:
        """The README's definition, applied to a file archit writes, finds its checksum, and a changed byte changes it."""
        from archit.instantiation.basemodels import RobertaBaseModel
        from archit.instantiation.heads import TokenClassificationHeadConfig
        from archit.instantiation.tasks import ForSingleLabelTokenClassification

        model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(
            RobertaBaseModel(roberta_config()), TokenClassificationHeadConfig(num_labels=3))
        folder = self.tmp / "checksum-probe"
        model.save_pretrained(str(folder))
        stored, computed = namespace["archit_checksum"](folder / "model.safetensors")
        assert stored == computed and len(stored) == 64
        raw = bytearray((folder / "model.safetensors").read_bytes())
        raw[-1] ^= 1
        (folder / "model.safetensors").write_bytes(bytes(raw))
        stored, computed = namespace["archit_checksum"](folder / "model.safetensors")
        assert stored != computed


def test_readme_runs_as_printed(tmp_path, monkeypatch, capsys):
    """Every python block, then the archit commands and examples of the shell blocks, in README order, in one folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where examples/quickstart.py makes its folder
    (tmp_path / "tmp").mkdir()
    checks = _Checks(tmp_path)
    ran = {"python": 0, "archit-run": 0, "example": 0}
    for block in rb.all_blocks():
        kind = rb.block_kind(block)
        if kind == "python":
            name = f"readme_block_{block.line}"  # importable, so that printed code can import the block's classes
            module = types.ModuleType(name)
            monkeypatch.setitem(sys.modules, name, module)
            capsys.readouterr()
            exec(compile(block.text, f"{rb.README}:{block.line + 1}", "exec"), module.__dict__)
            printed = capsys.readouterr().out
            for check in checks.for_block(block.text):
                check(module.__dict__, printed)
            ran["python"] += 1
        elif kind == "commands":
            for command in rb.commands(block):
                command_kind = rb.command_kind(command)
                if command_kind == "archit-run":
                    _run_archit(command, capsys)
                    ran["archit-run"] += 1
                elif command_kind == "example":
                    _run_example(command, monkeypatch)
                    ran["example"] += 1
    assert checks.used == {marker: 1 for marker in checks.by_marker}, \
        "each check's marker must occur in exactly one python block: reword the marker with the block"
    assert ran["python"] == README_TEXT.count("\n```python\n")
    assert ran["archit-run"] == len(rb.all_commands("archit-run")) > 0
    assert ran["example"] == len(rb.all_commands("example")) > 0


def _run_archit(command: rb.Command, capsys) -> None:
    capsys.readouterr()
    code = archit_main(list(command.argv[1:]))
    captured = capsys.readouterr()
    assert code == 0, f"{command.line}: exit {code}\n{captured.err}"
    _assert_output(command, captured.out)


def _run_example(command: rb.Command, monkeypatch) -> None:
    script = ROOT / command.argv[1]
    assert script.is_file(), f"{command.block.where}: {command.argv[1]} does not exist"
    monkeypatch.setattr(sys, "argv", [str(script), *command.argv[2:]])
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        runpy.run_path(str(script), run_name="__main__")  # the quickstart raises SystemExit when a check fails
    assert "max |difference|" in printed.getvalue()


# ---------------------------------------------------------------------------------------------------------------------
# Printed output, compared modulo what differs from run to run.

def _normalise(lines: Sequence[str]) -> List[str]:
    """Timings, the archit version, the matrix's cache folder and whether an environment was made or found."""
    out: List[str] = []
    seconds_columns: List[int] = []  # the columns of the Markdown table being read whose header ends in " s"
    for line in lines:
        if line.startswith("|") and not (out and out[-1].startswith("|")):
            seconds_columns = [i for i, cell in enumerate(_cells(line)) if cell.strip().endswith(" s")]
        elif line.startswith("|") and not line.startswith("|---"):
            cells = _cells(line)
            line = "|".join(" <t> " if i in seconds_columns and cell.strip() not in ("", "–") else cell
                            for i, cell in enumerate(cells))
        line = re.sub(r"\b\d+(\.\d+)? s\b", "<t> s", line.rstrip())
        line = re.sub(r"\(archit \d{4}\.\d+\.\d+\)", "(archit <version>)", line)
        line = re.sub(r"environments in \S+", "environments in <cache>", line)
        line = re.sub(r"\(env (made|cached) ", "(env <state> ", line)
        out.append(line)
    # Lines printed as releases finish come in any order: each run of lines with the same first word is sorted.
    runs: List[List[str]] = []
    for line in out:
        key = line.split(" ", 1)[0]
        if runs and runs[-1][0].split(" ", 1)[0] == key and line != "...":
            runs[-1].append(line)
        else:
            runs.append([line])
    return [line for run in runs for line in sorted(run)]


def _cells(row: str) -> List[str]:
    return re.split(r"(?<!\\)\|", row)  # a cell may hold an escaped \|


_RELEASE_LINE = re.compile(r"(transformers \S+ +era \S+ +)((?:same|differs), max \|diff\| \S+)(, load .*)")
_PENDING = "loads (compared once the reference ends), max |diff| –"


def _line_pattern(line: str) -> str:
    """A README output line as a regular expression: ``...`` any lines; a matrix release line also as printed when the
    release ended before the reference it is compared with (releases run at once end in any order)."""
    if line == "...":
        return "(?:.*\n)*?"
    release = _RELEASE_LINE.fullmatch(line)
    if release:
        before, status, after = release.groups()
        return f"{re.escape(before)}(?:{re.escape(status)}|{re.escape(_PENDING)}){re.escape(after)}\n"
    return re.escape(line) + "\n"


def _assert_output(command: rb.Command, printed: str) -> None:
    """What the command printed is what the README shows; a ``...`` line there stands for any lines."""
    expected = _normalise(command.output)
    actual = _normalise(printed.rstrip("\n").splitlines())
    pattern = "".join(_line_pattern(line) for line in expected)
    assert re.fullmatch(pattern, "".join(line + "\n" for line in actual)), (
        f"{command.block.where}: `{command.line}` printed other lines than the README shows (normalised; - README, "
        "+ printed):\n" + "\n".join(difflib.unified_diff(expected, actual, lineterm="", n=1)))


def test_output_comparison_can_fail():
    block = rb.Block("console", "$ archit x\nsame in 1.5 s\n...\nlast\n| \\|a\\| | load s |\n|---|---|\n| 0 | 0.1 |\n", 1)
    (command,) = rb.commands(block)
    _assert_output(command, "same in 9 s\nanything\nmore\nlast\n| \\|a\\| | load s |\n|---|---|\n| 0 | 7.5 |\n")
    with pytest.raises(AssertionError):
        _assert_output(command, "same in 9 s\nlast\n| \\|a\\| | load s |\n|---|---|\n| 1 | 0.1 |\n")
    with pytest.raises(AssertionError):
        _assert_output(command, "differs in 9 s\nlast\n")
    with pytest.raises(AssertionError):
        _assert_output(command, "same in 9 s\nlast\nextra\n| \\|a\\| | load s |\n|---|---|\n| 0 | 0.1 |\n")


def test_a_release_line_may_be_printed_before_the_reference_ends():
    line = "transformers 4.57.6    era 4.50  {}, load 0.01 s  (env cached 0.0 s, 9.2 s in all)"
    (command,) = rb.commands(rb.Block("console", "$ archit matrix m\n" + line.format("same, max |diff| 0") + "\n", 1))
    _assert_output(command, line.format(_PENDING) + "\n")
    for other in ("differs, max |diff| 0.5", "fails: ValueError: no"):
        with pytest.raises(AssertionError):
            _assert_output(command, line.format(other) + "\n")


# ---------------------------------------------------------------------------------------------------------------------
# Commands too long for the default run: checked against what they name.

@pytest.mark.parametrize("command", _params("pip-install"))
def test_setup_installs(command):
    """Requirements that parse; the torch pin is the build the noxfile and ``archit matrix`` use; ``-e .`` is this
    project."""
    words = list(command.argv[2:])
    if "-e" in words:
        assert words[words.index("-e") + 1] == "." and (ROOT / "pyproject.toml").is_file()
        del words[words.index("-e"):words.index("-e") + 2]
    assert words and not [w for w in words if w.startswith("-")], f"{command.line}: options this check does not know"
    for word in words:
        requirement = Requirement(word)
        if requirement.name == "torch":
            assert word == releases.DEFAULT_TORCH, f"{command.block.where}: {word}, the sessions use {releases.DEFAULT_TORCH}"


def _noxfile() -> Dict[str, object]:
    """The sessions, their tags, the parametrised ones and the default tags, read from noxfile.py without running it
    (nox is not installed in the test sessions' environments)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    sessions, parametrised, tags, default_tags = set(), set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            names = [ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list]
            if "nox.session" in names:
                sessions.add(node.name)
            if "nox.parametrize" in names:
                parametrised.add(node.name)
        if isinstance(node, ast.keyword) and node.arg == "tags":
            tags |= {c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "nox.options.tags":
            default_tags = set(ast.literal_eval(node.value))
    return {"sessions": sessions, "parametrised": parametrised, "tags": tags, "default_tags": default_tags}


def _check_nox(line: str, where: str) -> None:
    argv = shlex.split(line)
    assert argv[0] == "nox", line
    nox = _noxfile()
    words, posargs = (argv[1:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv[1:], [])
    option: Optional[str] = None
    for word in words:
        if word in ("-s", "--session", "--sessions", "-t", "--tags"):
            option = word
        elif word in ("-l", "--list"):
            option = None
        elif word.startswith("-"):
            raise AssertionError(f"{where}: `{line}`: {word} is not an option this check knows")
        elif option in ("-s", "--session", "--sessions"):
            name = re.fullmatch(r"([\w-]+)(?:\(tf(\d+\.\d+)\))?", word)
            assert name and name.group(1) in nox["sessions"], f"{where}: `{line}`: no session {word} in noxfile.py"
            if name.group(2):
                assert name.group(1) in nox["parametrised"], f"{where}: {name.group(1)} takes no parameter"
                assert releases.minor_key(name.group(2)) >= releases.minor_key(releases.TRANSFORMERS_FLOOR), word
        elif option in ("-t", "--tags"):
            assert word in nox["tags"], f"{where}: `{line}`: no session tagged {word} in noxfile.py"
        else:
            raise AssertionError(f"{where}: `{line}`: {word} follows no option")
    for word in posargs:
        if "/" in word or word.endswith(".py"):
            assert (ROOT / word).exists(), f"{where}: `{line}`: {word} does not exist"
        elif re.fullmatch(r"\d+\.\d+", word):
            assert word in releases.TRANSFORMERS_MINORS, f"{where}: `{line}`: no transformers minor {word}"


@pytest.mark.parametrize("command", _params("nox"))
def test_nox_commands_of_the_blocks(command):
    _check_nox(command.line, command.block.where)


@pytest.mark.parametrize("line", rb.inline_nox_commands(README_TEXT))
def test_nox_commands_of_the_prose(line):
    _check_nox(line, "README.md prose")


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README_TEXT, flags=re.S | re.M)
    assert match, f"README.md has no section '## {title}'"
    return match.group(1)


def test_setup_is_two_commands_after_clone_cd_and_venv():
    """The set-up section: clone, cd and a virtual environment in its prose, then exactly two commands: one that runs
    the main job (examples/quickstart.py), one that runs the tests (nox)."""
    section = _section("Set-up")
    blocks = rb.read_blocks(section)
    assert len(blocks) == 2 and all(rb.block_kind(b) == "commands" for b in blocks), [b.text for b in blocks]
    lines = [line for block in blocks for line in block.text.splitlines()]
    assert len(lines) == 2 and "examples/quickstart.py" in lines[0] and lines[1].endswith("&& nox"), lines
    prose = re.sub(r"^```.*?^```", "", section, flags=re.S | re.M)
    assert re.search(r"`git clone [^`]+ (\w+)`", prose) and re.search(r"`cd \w+`", prose), prose
    assert "-m venv .venv`" in prose and "`source .venv/bin/activate`" in prose


def test_the_default_nox_run_is_what_the_setup_says():
    """The number of sessions plain ``nox`` runs, as nox itself lists them (where nox is installed: not inside the
    nox sessions, whose environments hold the test requirements only)."""
    if importlib.util.find_spec("nox") is None:
        pytest.skip("nox is not installed in this environment")
    stated = re.search(r"Plain `nox` runs (\d+) sessions", _section("Set-up"))
    assert stated, "the set-up section no longer says how many sessions plain `nox` runs"
    listed = subprocess.run([sys.executable, "-m", "nox", "-l", "--json"], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == int(stated.group(1))


def test_nox_check_can_fail():
    assert {"lint", "eras"} <= _noxfile()["default_tags"] and "tests" in _noxfile()["parametrised"]
    for line in ("nox -s nosuch", "nox -t nosuch", "nox -s lint(tf4.36)", "nox -s \"tests(tf4.36)\" -- tests/nosuch.py",
                 "nox --nosuch"):
        with pytest.raises(AssertionError):
            _check_nox(line, "test")


def _subparser(name: str) -> argparse.ArgumentParser:
    (commands,) = [a for a in archit_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices[name]


def _check_archit_options(command: rb.Command) -> argparse.Namespace:
    """Every option is one the parser has, spelt in full (argparse would also take an abbreviation), and the whole
    command line parses."""
    known = _subparser(command.argv[1])._option_string_actions
    for word in command.argv[2:]:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"{command.block.where}: archit {command.argv[1]} has no {word}"
    try:
        return archit_parser().parse_args(list(command.argv[1:]))
    except SystemExit as error:
        raise AssertionError(f"{command.block.where}: `{command.line}` does not parse") from error


@pytest.mark.parametrize("command", _params("archit-matrix") + _params("archit-run"))
def test_archit_command_lines_parse(command):
    _check_archit_options(command)


def test_archit_option_check_can_fail():
    block = rb.Block("console", "$ archit matrix ckpt --base B --task T --transformers 5.0 --nosuch\n", 1)
    with pytest.raises(AssertionError):
        _check_archit_options(rb.commands(block)[0])


@pytest.mark.parametrize("command", _params("accelerate-launch"))
def test_accelerate_launch_lines(command):
    """accelerate's own parser takes the command line; the config file and the script exist; the config starts 2
    processes with the FSDP version the script's docstring says."""
    from accelerate.commands.launch import launch_command_parser

    try:
        args = launch_command_parser().parse_args(list(command.argv[2:]))
    except SystemExit as error:
        raise AssertionError(f"{command.block.where}: `{command.line}` does not parse") from error
    assert (ROOT / args.training_script).is_file() and (ROOT / args.config_file).is_file(), command.line
    assert command.line.replace("accelerate launch ", "") in (ROOT / args.training_script).read_text()
    config = (ROOT / args.config_file).read_text()
    assert "num_processes: 2" in config and "distributed_type: FSDP" in config


def test_layout_names_existing_folders():
    (layout,) = [b for b in rb.all_blocks() if rb.block_kind(b) == "layout"]
    named = [line.split()[0] for line in layout.text.splitlines() if line and not line[0].isspace()]
    assert named and all((ROOT / name).is_dir() for name in named), [n for n in named if not (ROOT / n).is_dir()]


# ---------------------------------------------------------------------------------------------------------------------
# For real, in the slow and distributed sessions.

def _make_modernbert_tagger(cwd: Path, checkpoint: str) -> None:
    import transformers

    from archit.instantiation.basemodels import ModernBertBaseModel
    from archit.instantiation.heads import TokenClassificationHeadConfig
    from archit.instantiation.tasks import ForSingleLabelTokenClassification

    config = transformers.ModernBertConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                           cls_token_id=1, sep_token_id=2)
    torch.manual_seed(0)
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(
        ModernBertBaseModel(config), TokenClassificationHeadConfig(num_labels=5))
    model.save_pretrained(str(cwd / checkpoint))


def _make_tagger(cwd: Path, checkpoint: str) -> None:
    """What the README's python block that saves it writes (that block, run here in ``cwd``)."""
    (block,) = [b for b in rb.all_blocks() if b.language == "python" and f'.save_pretrained("{checkpoint}")' in b.text]
    before = os.getcwd()
    os.chdir(cwd)
    try:
        exec(compile(block.text, str(rb.README), "exec"), {"__name__": "readme_tagger"})
    finally:
        os.chdir(before)


# The checkpoints the matrix examples read, by the path they name.
MATRIX_CHECKPOINTS: Dict[str, Callable[[Path, str], None]] = {
    "path/to/tagger": _make_tagger,
    "path/to/modernbert-tagger": _make_modernbert_tagger,
}


@pytest.fixture(scope="module")
def matrix_cache(tmp_path_factory):
    """One environment cache for every matrix example (a release two examples name is made once)."""
    return tmp_path_factory.mktemp("readme-matrix-cache")


@pytest.mark.slow
@pytest.mark.parametrize("command", _params("archit-matrix"))
def test_archit_matrix_examples_run(command, tmp_path, matrix_cache):
    """The command as printed (in a folder holding the checkpoint it names), its output as the README shows it."""
    checkpoint = command.argv[2]
    assert checkpoint in MATRIX_CHECKPOINTS, f"{command.block.where}: the test makes no {checkpoint}; add it"
    MATRIX_CHECKPOINTS[checkpoint](tmp_path, checkpoint)
    env = {**os.environ, "OMP_NUM_THREADS": "1", releases.CACHE_DIR_ENV: str(matrix_cache)}
    done = subprocess.run([sys.executable, "-m", "archit", *command.argv[1:]], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=1800)
    expected_code = 1 if command.output and command.output[-1].startswith("NOT THE SAME") else 0
    assert done.returncode == expected_code, done.stdout + done.stderr
    _assert_output(command, done.stdout)


@pytest.mark.distributed
@pytest.mark.parametrize("command", _params("accelerate-launch"))
def test_accelerate_launch_examples_run(command, tmp_path):
    """The command as printed (accelerate's launcher from this environment), with ``--workdir`` into the test's folder."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    done = subprocess.run([*launcher, *command.argv[2:], "--workdir", str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


# ---------------------------------------------------------------------------------------------------------------------
# Helpers of the python blocks' checks.

def _check_loaded_from_checkpoint(model, checkpoint: Path) -> None:
    stored = load_file(str(checkpoint / "model.safetensors"))
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
