"""The ``archit`` console script: ``archit inspect CHECKPOINT [--json]``, ``archit verify CHECKPOINT [--variant V]``,
``archit export CHECKPOINT OUT [--base CLASS] [--task CLASS]`` and ``archit matrix CHECKPOINT --base CLASS --task CLASS
(--transformers V [V ...] | --all)``. Exit codes: 0 done; 1 the command cannot do it for this checkpoint (a damaged
file; no transformers equivalent to export to; a release where the checkpoint fails or computes something else), or
failed unforeseen; 2 a bad argument or an unreadable checkpoint. Errors are one line on stderr, logged
as ``archit: error: ...``; ``-v`` shows archit's progress messages too, and the traceback of an unforeseen failure.

The parser imports nothing of archit's but the version: each command's module (and with it torch and transformers) is
imported when the command runs, so that ``--help`` and ``--version`` answer at once."""
import argparse
import json
import logging
import sys
from typing import Optional, Sequence

from .. import __version__ as archit_version
from .messages import CommandError

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
    from . import inspection

    description = inspection.inspect_checkpoint(args.checkpoint)
    sys.stdout.write((json.dumps(description.to_dict(), indent=2) if args.json else inspection.render(description))
                     + "\n")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .verification import verify_command

    report = verify_command(args.checkpoint, args.variant)
    for check in report.files:
        sys.stdout.write(f"{check.status:<10}  {check.message}\n")
    sys.stdout.write(report.summary() + "\n")
    return 0 if report.ok else 1


def _export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    name = export_checkpoint(args.checkpoint, args.out, base=args.base, task=args.task, head_config=args.head_config,
                             trust_remote_code=args.trust_remote_code)
    sys.stdout.write(f"Saved {name} to {args.out}\n")
    return 0


def _matrix(args: argparse.Namespace) -> int:
    from .matrix import MatrixModes, matrix_command

    modes = MatrixModes(jobs=args.jobs, transformers_class=args.transformers_class, defaults=args.defaults,
                        across_saves=args.across_saves)
    return matrix_command(args.checkpoint, args.base, args.task, args.head_config, args.transformers, args.all, args.pre,
                          args.reference, args.atol, args.out, args.cache_dir, args.probes, sys.stdout,
                          trust_remote_code=args.trust_remote_code, name=args.name, modes=modes)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archit", description="Inspect, verify and export archit and "
                                                                "transformers checkpoints, and compare a checkpoint's outputs "
                                                                "across transformers releases.")
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

    verify = commands.add_parser(
        "verify", help="check a checkpoint's files against the checksums archit wrote into them",
        description="Recompute the SHA-256 checksum of every weight file that carries one (archit writes them), and "
                    "check the structure of config.json, the weight files' headers and the index. Files without a "
                    "checksum (written by transformers or the published ArchIt) get their structure checked only, and "
                    "the output says so. Exits 1 naming the damaged file.")
    verify.add_argument("checkpoint", metavar="CHECKPOINT", help="a local checkpoint folder, or a head saved by saveHead")
    verify.add_argument("--variant", metavar="V", help="the weights of this variant (model.V.safetensors)")
    verify.set_defaults(run=_verify)

    export = commands.add_parser(
        "export", help="save an archit checkpoint as its transformers task model",
        description="Load an archit checkpoint, turn it into the transformers task model computing the same function "
                    "(toHuggingFace) and save that to OUT. Exits 1 when transformers has no such class.")
    export.add_argument("checkpoint", metavar="CHECKPOINT", help="an archit checkpoint (local folder or hub id)")
    export.add_argument("out", metavar="OUT", help="the folder to save the transformers model to")
    export.add_argument("--base", metavar="CLASS", help="the base model class (RobertaBaseModel, AutoBaseModel, or "
                                                        "package.module:Class); default: the one fitting model_type")
    export.add_argument("--task", metavar="CLASS", help="the task (ForMaskedLM, or package.module:Class); default: "
                                                        "the checkpoint's own (a transformers task model's: the archit "
                                                        "task computing what its head computes)")
    export.add_argument("--head-config", metavar="JSON", help="the head config as a JSON object (default: the "
                                                              "checkpoint's own; a base model has none)")
    export.add_argument("--trust-remote-code", action="store_true",
                        help="build a base model that ships its own code (auto_map) from that code: it runs it")
    export.set_defaults(run=_export)

    matrix = commands.add_parser(
        "matrix", help="load a checkpoint on many transformers releases and compare the outputs",
        description="For each transformers release, in an isolated cached environment (uv; the torch build and "
                    "companions the noxfile uses): load the checkpoint with archit, run a fixed input, save and reload, "
                    "and compare the logits with the reference release's. Writes OUT/matrix.json, matrix.md and "
                    "matrix.html; exits 1 when a release fails or differs.")
    matrix.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?", help="a local checkpoint folder")
    matrix.add_argument("--base", metavar="CLASS", help="the base model class (RobertaBaseModel, AutoBaseModel, or "
                                                        "package.module:Class); default: the one archit inspect "
                                                        "plans with")
    matrix.add_argument("--task", metavar="CLASS", help="the task (ForMaskedLM, or package.module:Class); default: the "
                                                        "one archit inspect plans with (an archit checkpoint's own, a "
                                                        "transformers task model's archit equivalent)")
    matrix.add_argument("--head-config", metavar="JSON", help="the head config as a JSON object (default: the "
                                                              "checkpoint's own)")
    releases = matrix.add_mutually_exclusive_group()
    releases.add_argument("--transformers", metavar="V", nargs="+", help="releases: 4.57.3, or 4.57 for its newest "
                                                                         "patch")
    releases.add_argument("--all", action="store_true", help="the newest patch of every minor from 4.36 on (from the "
                                                             "package index; the built-in list offline)")
    matrix.add_argument("--pre", action="store_true", help="with --all: pre-releases too")
    matrix.add_argument("--reference", metavar="V", help="the release the others are compared with (default: the "
                                                         "newest that loads)")
    matrix.add_argument("--atol", metavar="X", type=float, default=1e-5, help="largest |logit difference| counted as "
                                                                              "the same (default: 1e-5)")
    matrix.add_argument("--out", metavar="DIR", default="archit-matrix", help="where the results go (default: "
                                                                              "./archit-matrix)")
    matrix.add_argument("--cache-dir", metavar="DIR", help="where the environments are kept (default: "
                                                           "~/.cache/archit/matrix)")
    matrix.add_argument("--probes", metavar="FILE", help="instead of CHECKPOINT/--base/--task: a JSON list of "
                                                         "{name, checkpoint, base, task[, head_config]}, one column "
                                                         "each")
    matrix.add_argument("--trust-remote-code", action="store_true",
                        help="build a base model that ships its own code (auto_map) from that code: it runs it")
    # The guidance options (what the checks at the top of matrix_command use).
    matrix.add_argument("--name", metavar="NAME", help="the title of the report (default: the checkpoint's name: its "
                                                      "folder, with its parent where the folder is called model, "
                                                      "checkpoint-500, final, ...)")
    modes = matrix.add_argument_group("what to run besides archit's pinned load")
    modes.add_argument("--jobs", metavar="N", type=int, help="releases run at once: environments made and workers run "
                                                             "concurrently (default: the machine's cores)")
    modes.add_argument("--transformers-class", metavar="NAME", help="load with transformers' own class instead of "
                       "archit's: auto (the class the checkpoint's config.json names, else the AutoModelFor... of its "
                       "task, in each release) or a name (AutoModelForTokenClassification, RobertaForMaskedLM); no "
                       "--base/--task")
    modes.add_argument("--defaults", action="store_true", help="also load with each release's own defaults (no dtype, "
                       "no attention implementation: a plain from_pretrained(checkpoint)) and compare those too")
    modes.add_argument("--across-saves", action="store_true", help="every release saves the checkpoint (OUT/saves/) "
                       "and every release loads every save: a saved-on x loaded-on grid")
    matrix.set_defaults(run=_matrix)

    for command in (inspect, verify, export, matrix):
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

