"""The README's code blocks and what ``tests/test_readme.py`` does with each: the one place where a block or a command
is classified. A block or command that nothing here knows is an error (``UnknownBlock``), so a new one cannot go
unchecked: teach ``block_kind`` or ``command_kind`` its kind, and ``tests/test_readme.py`` how to run or check it.

Kinds of block: ``python`` (run, in README order, each in a namespace of its own, all in one folder, so that a block
can read what an earlier one wrote), ``commands`` (``shell``/``bash``/``console``: each command classified below;
``console`` blocks also give the output each ``$ command`` prints), ``layout`` (a plain block listing folders).

Kinds of command, by the command line itself (never by the block's position):
``pip-install`` (set-up: the requirements checked), ``example`` (``python examples/...``: run), ``nox`` (sessions,
tags and files checked against noxfile.py), ``archit-run`` (``archit inspect/verify/export``: run, output compared),
``archit-matrix`` (options checked against the parser; run for real and output compared in the slow session),
``accelerate-launch`` (files and options checked; run for real in the distributed session).
"""
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

README = Path(__file__).resolve().parent.parent / "README.md"

BLOCK_KINDS = ("python", "commands", "layout")
COMMAND_KINDS = ("pip-install", "example", "nox", "archit-run", "archit-matrix", "accelerate-launch")
SHELL_LANGUAGES = ("shell", "bash", "console")


class UnknownBlock(AssertionError):
    """A README block or command that tests/readme_blocks.py cannot classify."""


@dataclass(frozen=True)
class Block:
    language: str  # "" for a plain fence
    text: str
    line: int  # the line of the opening fence, 1-based

    @property
    def where(self) -> str:
        return f"README.md:{self.line}"


@dataclass(frozen=True)
class Command:
    argv: Tuple[str, ...]
    output: Tuple[str, ...]  # what a console block shows it printing; () elsewhere
    block: Block

    @property
    def line(self) -> str:
        return shlex.join(self.argv)

    @property
    def id(self) -> str:
        return f"{self.block.where} {self.line}"[:100]


def fence_lines(text: str) -> int:
    """How many lines open or close a code block (counted independently of ``read_blocks``)."""
    return sum(1 for line in text.splitlines() if line.startswith("```"))


def read_blocks(text: str) -> List[Block]:
    """Every fenced block, in order."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = re.fullmatch(r"```(\w*)\s*", lines[i])
        if lines[i].startswith("```") and not opening:
            raise UnknownBlock(f"README.md:{i + 1}: a fence this test cannot read: {lines[i]!r}")
        if opening:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            if end is None or lines[end].strip() != "```":
                raise UnknownBlock(f"README.md:{i + 1}: the block opened here is not closed by a plain ``` line")
            blocks.append(Block(opening.group(1), "\n".join(lines[i + 1:end]) + "\n", i + 1))
            i = end
        i += 1
    return blocks


def block_kind(block: Block) -> str:
    if block.language == "python":
        return "python"
    if block.language in SHELL_LANGUAGES:
        return "commands"
    if block.language == "":
        return "layout"
    raise UnknownBlock(f"{block.where}: no check for a ```{block.language} block; add one in tests/readme_blocks.py")


def commands(block: Block) -> List[Command]:
    """The commands of a shell/bash/console block; ``a && b`` is two commands. In a console block, the lines after a
    ``$ command`` up to the next one are its output."""
    found: List[Command] = []
    lines = block.text.splitlines()
    if block.language == "console":
        starts = [i for i, line in enumerate(lines) if line.startswith("$ ")]
        if not starts or starts[0] != 0:
            raise UnknownBlock(f"{block.where}: a console block must start with a `$ command` line")
        for n, start in enumerate(starts):
            end = starts[n + 1] if n + 1 < len(starts) else len(lines)
            parts = _split_and(lines[start][2:], block)
            found += [Command(argv, (), block) for argv in parts[:-1]]
            found.append(Command(parts[-1], tuple(lines[start + 1:end]), block))
    else:
        text = block.text.replace("\\\n", " ")
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                found += [Command(argv, (), block) for argv in _split_and(line, block)]
    return found


def _split_and(line: str, block: Block) -> List[Tuple[str, ...]]:
    words = shlex.split(line, comments=True)
    if any(word in ("|", ";", "||", ">", "<") for word in words):
        raise UnknownBlock(f"{block.where}: `{line}`: only `&&` between commands is understood")
    parts: List[List[str]] = [[]]
    for word in words:
        if word == "&&":
            parts.append([])
        else:
            parts[-1].append(word)
    if not all(parts):
        raise UnknownBlock(f"{block.where}: `{line}`: an empty command")
    return [tuple(part) for part in parts]


def command_kind(command: Command) -> str:
    argv = command.argv
    if argv[:2] == ("pip", "install"):
        return "pip-install"
    if argv[0] == "python" and len(argv) > 1 and argv[1].startswith("examples/"):
        return "example"
    if argv[0] == "nox":
        return "nox"
    if argv[0] == "archit" and len(argv) > 1 and argv[1] in ("inspect", "verify", "export"):
        return "archit-run"
    if argv[:2] == ("archit", "matrix"):
        return "archit-matrix"
    if argv[:2] == ("accelerate", "launch"):
        return "accelerate-launch"
    raise UnknownBlock(f"{command.block.where}: no check for `{command.line}`; add one in tests/readme_blocks.py")


def all_blocks() -> List[Block]:
    return read_blocks(README.read_text(encoding="utf-8"))


def all_commands(kind: str) -> List[Command]:
    """Every command of the kind ``kind``, in README order. Blocks and commands that cannot be classified are left out
    here (this runs when the tests are collected); ``test_every_block_is_known_and_counted`` fails on them."""
    assert kind in COMMAND_KINDS, kind
    found = []
    for block in all_blocks():
        try:
            if block_kind(block) == "commands":
                found += [command for command in commands(block) if command_kind(command) == kind]
        except UnknownBlock:
            continue
    return found


def inline_nox_commands(text: str) -> List[str]:
    """The ``nox ...`` commands the README's prose names in inline code (checked like those of the blocks)."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    spans = [span for span in re.findall(r"`([^`\n]+)`", prose) if re.match(r"nox( |$)", span)]
    return sorted(set(spans), key=spans.index)
