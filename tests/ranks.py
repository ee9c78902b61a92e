"""Run a function on several CPU processes joined in one ``torch.distributed`` gloo group, as ``torchrun`` would start
them: the distributed tests (``pytest -m distributed``, ``nox -s distributed``) call ``run_ranks``.

Each rank is a fresh interpreter (``multiprocessing``'s spawn), with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set as ``torchrun`` sets them, plus the caller's ``env``
(``ACCELERATE_USE_FSDP=1`` and kin), before anything imports torch or transformers. The process group is initialised
(gloo) before the function runs and destroyed after. The function must be importable by name (a module-level function
of a test module: ``tests`` is a package), its arguments and result picklable. No sleeps: the parent waits on the
results' queue, and a rank that fails or dies fails the call with that rank's traceback, the others stopped.
"""
import multiprocessing
import os
import queue
import socket
import traceback
from typing import Any, Callable, Dict, List, Optional

TIMEOUT_S = 600.0
"""How long the ranks may take together: generous, since a busy 2-core CI machine runs two interpreters importing torch
and transformers at once; a deadlock (a collective one rank skipped) still ends in a failure, not a hung suite."""


class RankFailed(AssertionError):
    """A rank raised or died; the message holds its traceback."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rank_main(rank: int, world_size: int, env: Dict[str, str], target: Callable[..., Any], args: tuple,
               results: "multiprocessing.Queue") -> None:
    os.environ.update(env)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "LOCAL_WORLD_SIZE": str(world_size), "GROUP_RANK": "0"})
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        try:
            value = target(rank, world_size, *args)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
        results.put((rank, True, value))
    except BaseException:  # noqa: BLE001 - the traceback goes to the parent, which fails the test with it
        results.put((rank, False, traceback.format_exc()))


def run_ranks(target: Callable[..., Any], *args: Any, world_size: int = 2, env: Optional[Dict[str, str]] = None,
              timeout: float = TIMEOUT_S) -> List[Any]:
    """``target(rank, world_size, *args)`` on ``world_size`` processes of one gloo group; answers each rank's return
    value, by rank. Raises ``RankFailed`` with the traceback of every rank that raised (or the exit code of one that
    died), after stopping the others."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    base = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    processes = [context.Process(target=_rank_main, args=(rank, world_size, base, target, args, results), daemon=True)
                 for rank in range(world_size)]
    for process in processes:
        process.start()
    values: Dict[int, Any] = {}
    failures: Dict[int, str] = {}
    finished = False
    try:
        while len(values) + len(failures) < world_size:
            try:
                rank, ok, value = results.get(timeout=5.0)
            except queue.Empty:
                dead = {i: f"died with exit code {p.exitcode} before answering" for i, p in enumerate(processes)
                        if p.exitcode not in (None, 0) and i not in values and i not in failures}
                failures.update(dead)
                timeout -= 5.0
                if failures and (dead or timeout <= 0):
                    break
                if timeout <= 0:
                    raise RankFailed(f"ranks {sorted(set(range(world_size)) - set(values))} did not answer in time "
                                     f"(a collective that another rank skipped?)") from None
                continue
            if ok:
                values[rank] = value
            else:
                failures[rank] = value
                # The others are left in a collective with a rank that is gone: they fail soon, or hang; a minute
                # for them to report their own failure.
                timeout = min(timeout, 60.0)
        if failures:
            # Every failed rank's traceback: the first to arrive may be a peer's "connection reset", not the cause.
            raise RankFailed("\n".join(f"rank {rank} failed:\n{failures[rank]}" for rank in sorted(failures)))
        finished = True
    finally:
        for process in processes:
            if finished:
                process.join(timeout=60)  # Each has answered: only its teardown is left.
            if process.is_alive():
                process.kill()
            process.join()
    return [values[rank] for rank in range(world_size)]
