"""interrupt.py: Ctrl-C as a stop request, the non-finite loss error."""
from __future__ import annotations

import math
import signal
import threading

import pytest
import torch

from dhmrec_pyg.training.interrupt import NonFiniteLossError, StopRequest, TrainingInterrupted, non_finite_error


def test_first_ctrl_c_requests_a_stop_the_second_aborts_and_the_handler_comes_back(capsys):
    before = signal.getsignal(signal.SIGINT)
    stop = StopRequest()
    with stop.catching_sigint():
        signal.raise_signal(signal.SIGINT)
        assert stop.requested
        assert "finishing the current batch" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_nothing_is_installed_when_disabled_or_off_the_main_thread():
    before = signal.getsignal(signal.SIGINT)
    stop = StopRequest()
    with stop.catching_sigint(enabled=False):
        assert signal.getsignal(signal.SIGINT) is before
    seen = []

    def worker() -> None:
        with stop.catching_sigint():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before]
    assert not stop.requested
    stop.request()
    assert stop.requested


def test_non_finite_error_names_the_component_not_the_total():
    terms = {"loss": torch.tensor(math.nan), "bpr": torch.tensor(0.5), "reg": torch.tensor(math.inf)}
    err = non_finite_error(terms, ["loss", "reg"], epoch=2, batch=5, note="; the checkpoint is intact")
    assert isinstance(err, NonFiniteLossError)
    assert (err.epoch, err.batch, err.term) == (2, 5, "reg")
    assert str(err) == ("loss term 'reg' is inf at epoch 2, batch 5 (also non-finite: 'loss'); "
                        "training stopped; the checkpoint is intact")


def test_a_term_finite_here_but_not_on_another_rank_reads_nan():
    err = non_finite_error({"loss": torch.tensor(1.0)}, ["loss"], 0, 1, distributed=True)
    assert str(err).startswith("loss term 'loss' is nan at epoch 0, batch 1;") and err.term == "loss"


def test_training_interrupted_says_where_the_checkpoint_continues(tmp_path):
    mid = TrainingInterrupted(tmp_path, 1, 4)
    assert "epoch 1, batch 4" in str(mid) and str(tmp_path / "checkpoint.pt") in str(mid)
    assert "the start of epoch 2" in str(TrainingInterrupted(tmp_path, 2, 0))
    assert (mid.run_dir, mid.epoch, mid.batch) == (tmp_path, 1, 4)
