"""How long ``archit --help`` and ``archit --version`` take, from the start of the process to its exit: the console
script and ``python -m archit``, each run ``--runs`` times in a fresh process (after one discarded warm-up run, so that
bytecode is compiled), medians and minima in seconds; and whether the run imported torch or transformers (read from
``python -X importtime``). The answers must not import either (``tests/test_cli_guidance.py`` checks that; this gives
the numbers, which depend on the machine and its load, so no test times them).

    python benchmarks/bench_cli_startup.py [--runs 7] [--source CHECKOUT]

``--source`` measures another checkout's archit (on ``PYTHONPATH``, ahead of the installed one), e.g. a worktree of an
older commit, for a before/after comparison; the console script always runs the installed archit, so with ``--source``
only ``python -m archit`` rows are measured. Every command runs in the temporary folder, so that a checkout in the
current folder does not shadow the archit measured.

On the 2-core dev machine, shared with two other sessions (load average 2-3), 7 runs each: before (commit 42c04b0,
``--source``) ``python -m archit --help`` 13.96 s and ``--version`` 11.54 s, importing torch, transformers, safetensors
and numpy (the console script: 13.2-13.7 s); after, 0.055-0.070 s for all four, importing none of them."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional


def run_once(command: List[str], env: Dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True,
                   cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def heavy_imports(command: List[str], env: Dict[str, str]) -> List[str]:
    """The heavy top-level packages the command imports (``-X importtime``'s log on stderr)."""
    done = subprocess.run([sys.executable, "-X", "importtime", *command[1:]], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir())
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    return sorted(imported & {"torch", "transformers", "safetensors", "numpy"})


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--source", help="a checkout whose archit to measure (python -m archit only)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(args.source).resolve()), env.get("PYTHONPATH")]))
    script = str(Path(sys.executable).parent / "archit")
    commands = {f"python -m archit {flag}": [sys.executable, "-m", "archit", flag] for flag in ("--help", "--version")}
    if not args.source:
        commands = {**{f"archit {flag}": [script, flag] for flag in ("--help", "--version")}, **commands}
    print(f"| command | median s | min s | imports ({args.runs} runs; load average {os.getloadavg()[0]:.1f}) |")
    print("|---|---|---|---|")
    for name, command in commands.items():
        run_once(command, env)  # Warm-up: bytecode compiled, files in the page cache.
        times = [run_once(command, env) for _ in range(args.runs)]
        heavy = heavy_imports([sys.executable, *command[1:]] if command[0] != script else
                              [sys.executable, "-m", "archit", *command[1:]], env)
        print(f"| `{name}` | {statistics.median(times):.3f} | {min(times):.3f} | {', '.join(heavy) or 'neither'} |")


if __name__ == "__main__":
    main()
