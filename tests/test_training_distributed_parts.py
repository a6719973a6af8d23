"""distributed.py's per-batch pieces of the trainer: this rank's device, its share of a batch, the
one all-reduce per batch that makes every rank agree (loss means, non-finite terms, stop requests)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from dhmrec_pyg.training import distributed as ddist

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def _loss(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> dict:
    """A per-triplet mean loss (its shards' size-weighted means give the batch mean)."""
    value = (u.float() + 2 * p.float() - n.float()).mean()
    return {"loss": value, "bpr": value / 2}


def test_one_process_takes_the_whole_batch_and_agrees_with_itself():
    device = torch.device("cpu")
    assert ddist.rank_device(device, "cpu") is device
    u, p, n = torch.arange(4), torch.arange(4) + 1, torch.zeros(4, dtype=torch.long)
    terms = ddist.shard_loss(_loss, u, p, n, device)
    assert terms["loss"].item() == pytest.approx(_loss(u, p, n)["loss"].item())
    bad, stop, means = ddist.agree_on_batch(terms, stop=True)
    assert (bad, stop) == ([], True) and means == pytest.approx({"loss": 6.5, "bpr": 3.25})  # 1.5 + 2 * 2.5 - 0
    broken = {"loss": torch.tensor(math.nan), "bpr": torch.tensor(1.0)}
    assert ddist.agree_on_batch(broken, stop=False) == (["loss"], False, {})
    assert ddist.any_rank(True) and not ddist.any_rank(False)


_DRIVER = textwrap.dedent('''
    import json, math, os, sys
    import torch
    import torch.distributed as dist
    from dhmrec_pyg.training import distributed as ddist
    sys.path.insert(0, os.environ["TEST_DIR"])
    from test_training_distributed_parts import _loss
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    out = {}
    for size in (5, 1):  # shares of 3 and 2, then of 1 and 0
        u, p = torch.arange(size), torch.arange(size) * 3 % 7
        n = torch.ones(size, dtype=torch.long)
        terms = ddist.shard_loss(_loss, u, p, n, torch.device("cpu"))
        bad, stop, means = ddist.agree_on_batch(terms, stop=(rank == 1 and size == 1))
        out[size] = {"bad": bad, "stop": stop, "means": means, "want": _loss(u, p, n)["loss"].item()}
    broken = {"loss": torch.tensor(math.nan if rank == 1 else 1.0)}
    out["broken"] = ddist.agree_on_batch(broken, stop=False)[0]
    out["any"] = [ddist.any_rank(rank == 0), ddist.any_rank(False)]
    with open(os.path.join(os.environ["OUT_DIR"], f"rank{rank}.json"), "w") as fh:
        json.dump(out, fh)
    dist.destroy_process_group()
''')


def test_two_ranks_agree_on_the_global_batch_mean_a_broken_term_and_a_stop(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    env = dict(os.environ, OMP_NUM_THREADS="1", OUT_DIR=str(tmp_path), TEST_DIR=os.path.dirname(__file__))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(driver)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for size, stop in (("5", False), ("1", True)):
        for out in ranks:  # both ranks see the same global means, and the same stop
            assert out[size]["bad"] == [] and out[size]["stop"] is stop
            assert out[size]["means"]["loss"] == pytest.approx(out[size]["want"], rel=1e-6)
            assert out[size]["means"]["bpr"] == pytest.approx(out[size]["want"] / 2, rel=1e-6)
    assert [out["broken"] for out in ranks] == [["loss"], ["loss"]]  # broken on rank 1 only
    assert [out["any"] for out in ranks] == [[True, False], [True, False]]
