"""benchmarks/opcount.py: the counter nests operators correctly, scales with parameter tensors, writes its files."""
import json

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks import opcount
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.models.base import EDGE
from dhmrec_pyg.training.sampler import BPRSampler


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return opcount.load_data("synthetic-tiny", root / "none", root)


def test_nested_operators_are_not_top_level():
    x, w = torch.randn(4, 3), torch.randn(5, 3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.nn.functional.linear(x, w)  # one call: aten::linear, which runs aten::t and aten::matmul/mm
        x.sum()
    counts = opcount.count_events(prof.events())
    assert counts["top_level"] == 2
    assert counts["names"] == {"other": {"aten::linear": 1, "aten::sum": 1}}  # no phase label
    assert counts["aten_events"] > counts["top_level"]


def _step(name, data):
    torch.manual_seed(0)
    model = MODELS[name](data, MODELS[name].config_class()
                         if name == "freedom" else MODELS[name].config_class())
    sampler = BPRSampler(data[EDGE].edge_index, int(data["item"].num_nodes), 64)
    return (opcount.count_step(model, sampler, impl="loop"), opcount.count_step(model, sampler, foreach=True),
            opcount.count_step(model, sampler))


def test_counts_are_positive_and_optimizer_ops_scale_with_parameter_tensors(tiny):
    bpr, bpr_foreach, bpr_trainer = _step("bpr", tiny)
    freedom, freedom_foreach, freedom_trainer = _step("freedom", tiny)
    assert (bpr.parameter_tensors, freedom.parameter_tensors) == (2, 6)
    for c in (bpr, freedom):
        assert c.aten_events > c.top_level > 0
        assert all(c.by_phase[p] > 0 for p in opcount.PHASES)
        assert "other" not in c.by_phase  # every operator falls in a phase
        assert sum(c.by_phase[p] for p in opcount.STEP_PHASES) == c.top_level  # the batch is apart
        assert sum(c.events_by_phase[p] for p in opcount.STEP_PHASES) == c.aten_events
    assert bpr.by_phase["batch"] == freedom.by_phase["batch"]  # the same for every model
    # Adam's per-tensor loop: the same operators for every tensor, so 3x the tensors, 3x the ops
    per_tensor = bpr.by_phase["optimizer"] / bpr.parameter_tensors
    assert per_tensor >= 3
    assert freedom.by_phase["optimizer"] == per_tensor * freedom.parameter_tensors
    assert freedom.top_level > bpr.top_level
    # the multi-tensor (foreach) Adam issues fewer operators than the loop once there are several tensors
    assert freedom_foreach.by_phase["optimizer"] < freedom.by_phase["optimizer"]
    assert freedom_foreach.by_phase["forward"] == freedom.by_phase["forward"]  # only the optimizer changes
    assert bpr_foreach.top_level <= bpr.top_level
    # the trainer's Adam (fused on the CPU): a few operators whatever the number of tensors
    assert freedom_trainer.by_phase["optimizer"] <= freedom_foreach.by_phase["optimizer"]
    assert freedom_trainer.by_phase["optimizer"] == bpr_trainer.by_phase["optimizer"]
    assert freedom_trainer.by_phase["forward"] == freedom.by_phase["forward"]


def test_main_writes_result_files(tmp_path, capsys):
    out = tmp_path / "results"
    assert opcount.main(["--dataset", "synthetic-tiny", "--models", "bpr,lightgcn", "--batch-size", "64",
                         "--synthetic-root", str(tmp_path / "data"), "--out", str(out)]) == 0
    result = json.loads((out / "opcount_synthetic-tiny.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"bpr", "lightgcn"} and all(r["status"] == "ok" for r in rows.values())
    assert rows["lightgcn"]["top_level"] > rows["bpr"]["top_level"] > 0  # propagation adds operators
    for key in ("cpu", "cores", "torch", "torch_geometric", "faiss"):
        assert result["environment"][key]
    md = (out / "opcount_synthetic-tiny.md").read_text()
    assert md.startswith("# Operators per training step")
    assert "Command: `python -m benchmarks.opcount --dataset synthetic-tiny" in md and "Machine:" in md
    assert "| bpr | 2 |" in md
    assert rows["bpr"]["optimizer_impl"] == "fused"  # what the trainer builds on the CPU
    assert rows["bpr"]["loop_top_level"] > rows["bpr"]["top_level"]


def test_missing_dataset_is_skipped(tmp_path, capsys):
    assert opcount.main(["--dataset", "tiktok", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")]) == 0
    assert "skipped" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_accelerator_blocks_count_the_kl_as_one_block(tiny):
    """With many CPU blocks DHMRec's KL repeats its operators per block; as on a GPU it runs once."""
    from dhmrec_pyg.nn import blocks

    saved = blocks.CPU_BLOCK_ELEMENTS
    blocks.CPU_BLOCK_ELEMENTS = 64  # force several blocks on the tiny graph
    try:
        row = opcount.count_model("dhmrec", tiny, batch_size=64)
    finally:
        blocks.CPU_BLOCK_ELEMENTS = saved
    assert row["device_top_level"] < row["top_level"]
    with opcount.accelerator_blocks():
        assert blocks.CPU_BLOCK_ELEMENTS == blocks.DEVICE_BLOCK_ELEMENTS
    assert blocks.CPU_BLOCK_ELEMENTS == saved
