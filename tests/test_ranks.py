"""``tests/ranks.py`` itself: the ranks form one gloo group, see the environment torchrun would set, and a failing
rank fails the call with its traceback instead of hanging the others."""
import os

import pytest

from tests.ranks import RankFailed, run_ranks

pytestmark = pytest.mark.distributed


def _sum_of_ranks(rank: int, world_size: int, marker: str):
    import torch
    import torch.distributed as dist

    value = torch.tensor([rank + 1.0])
    dist.all_reduce(value)
    return rank, int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]), os.environ["MARK"], value.item(), marker


def _fails_on_rank_1(rank: int, world_size: int):
    import torch.distributed as dist

    if rank == 1:
        raise ValueError("rank 1 refuses")
    dist.barrier()  # Rank 0 waits for a rank that never comes: the call must still end.


def test_ranks_form_one_group_with_torchrun_environment():
    assert run_ranks(_sum_of_ranks, "m", env={"MARK": "x"}) == [(0, 0, 2, "x", 3.0, "m"), (1, 1, 2, "x", 3.0, "m")]


def test_a_failing_rank_fails_the_call_with_its_traceback():
    with pytest.raises(RankFailed, match="(?s)rank 1 failed.*rank 1 refuses"):
        run_ranks(_fails_on_rank_1, timeout=120)
