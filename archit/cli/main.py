"""The ``archit`` console script: ``archit inspect CHECKPOINT [--json]`` and ``archit export CHECKPOINT OUT [--base CLASS]
[--task CLASS]``. Exit codes: 0 done; 1 the command cannot do it for this checkpoint (no transformers equivalent to
export to), or failed unforeseen; 2 a bad argument or an unreadable checkpoint. Errors are one line on stderr, logged
as ``archit: error: ...``; ``-v`` shows archit's progress messages too, and the traceback of an unforeseen failure."""
import argparse
import json
import logging
import sys
from typing import Optional, Sequence

from .. import __version__ as archit_version
from .classes import CommandError
from .export import export_checkpoint
from .inspection import inspect_checkpoint, render

logger = logging.getLogger(__name__)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command ``argv`` (default: the command line) and answer its exit code."""
    args = _parser().parse_args(argv)
    handler = _StderrHandler()
    package_logger = logging.getLogger("archit")
    level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        return args.run(args)
    except CommandError as error:
        logger.error("%s", error)
        return error.exit_code
    except Exception as error:  # Unforeseen: still one line, the traceback with -v.
        logger.error("%s: %s%s", type(error).__name__, error, "" if args.verbose else " (-v shows the traceback)",
                     exc_info=args.verbose)
        return 1
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(level)


def _inspect(args: argparse.Namespace) -> int:
    description = inspect_checkpoint(args.checkpoint)
    sys.stdout.write((json.dumps(description, indent=2) if args.json else render(description)) + "\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    name = export_checkpoint(args.checkpoint, args.out, base=args.base, task=args.task)
    sys.stdout.write(f"Saved {name} to {args.out}\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archit", description="Inspect and export archit and transformers "
                                                                "checkpoints.")
    parser.add_argument("--version", action="version", version=f"archit {archit_version}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = commands.add_parser(
        "inspect", help="say what a checkpoint is and what from_pretrained would do with it",
        description="Say what a checkpoint folder is (base model, transformers task model, archit checkpoint), what it "
                    "holds and what from_pretrained would load, initialise anew, leave unused and convert. Reads "
                    "config.json and the weight files' headers only.")
    inspect.add_argument("checkpoint", metavar="CHECKPOINT", help="a local checkpoint folder")
    inspect.add_argument("--json", action="store_true", help="print a JSON object instead of the text lines")
    inspect.set_defaults(run=_inspect)

    export = commands.add_parser(
        "export", help="save an archit checkpoint as its transformers task model",
        description="Load an archit checkpoint, turn it into the transformers task model computing the same function "
                    "(toHuggingFace) and save that to OUT. Exits 1 when transformers has no such class.")
    export.add_argument("checkpoint", metavar="CHECKPOINT", help="an archit checkpoint (local folder or hub id)")
    export.add_argument("out", metavar="OUT", help="the folder to save the transformers model to")
    export.add_argument("--base", metavar="CLASS", help="the base model class (RobertaBaseModel, AutoBaseModel, or "
                                                        "package.module:Class); default: the one fitting model_type")
    export.add_argument("--task", metavar="CLASS", help="the task (ForMaskedLM, or package.module:Class); default: "
                                                        "the checkpoint's own")
    export.set_defaults(run=_export)

    for command in (inspect, export):
        command.add_argument("-v", "--verbose", action="store_true", help="log what archit does")
    return parser


class _StderrHandler(logging.StreamHandler):
    """archit's log records as one line each on the current stderr: ``archit: <level>: <message>``."""

    def __init__(self):
        super().__init__(sys.stderr)
        self.setFormatter(_OneLine())


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"archit: {record.levelname.lower()}: {' '.join(record.getMessage().split())}"
        return line + "\n" + self.formatException(record.exc_info) if record.exc_info else line

