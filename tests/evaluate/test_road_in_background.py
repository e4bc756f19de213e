"""ROAD's imputations solved in a thread of their own on a CPU, while the forward passes run: the same curves as
solving them in the caller's thread, one intra-op thread for the solver, the caller's count untouched, and a
failing solve reported to the caller."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from gradcam_cli.metrics import faithfulness
from gradcam_cli.metrics.faithfulness import FaithfulnessSample, measure_faithfulness


def _model_and_samples():
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4)
    )
    model.eval()
    inputs = torch.randn(2, 3, 18, 22)
    maps = torch.rand(2, 18, 22)
    with torch.no_grad():
        probs = torch.softmax(model(inputs), dim=1)
    picks = [(0, 1), (1, 2), (1, 3)]  # three maps: three solves, two of them started while forward passes run
    return model, inputs, [FaithfulnessSample(b, c, maps[b], float(probs[b, c])) for b, c in picks]


def _solver_threads(monkeypatch) -> list[tuple[int, int]]:
    """Records (thread id, intra-op threads) of every imputation call."""
    seen = []
    solve = faithfulness.impute_removed

    def recording(*args, **kwargs):
        seen.append((threading.get_ident(), torch.get_num_threads()))
        return solve(*args, **kwargs)

    monkeypatch.setattr(faithfulness, "impute_removed", recording)
    return seen


def test_background_solves_give_the_curves_of_solves_in_the_callers_thread(monkeypatch, request) -> None:
    model, inputs, samples = _model_and_samples()
    seen = _solver_threads(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's count, that the solver's thread must not take or change
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    monkeypatch.setattr(faithfulness, "ROAD_IN_BACKGROUND", False)
    inline = measure_faithfulness(model, inputs, samples, 5, batch_size=4)
    assert [ident for ident, _ in seen] == [threading.get_ident()] * 3
    seen.clear()
    monkeypatch.setattr(faithfulness, "ROAD_IN_BACKGROUND", True)
    timings: dict = {}
    background = measure_faithfulness(model, inputs, samples, 5, batch_size=4, timings=timings)
    assert len(seen) == 3 and all(ident != threading.get_ident() and count == 1 for ident, count in seen)
    assert torch.get_num_threads() == 2  # the caller's forward passes keep their threads
    assert timings["imputation_solve"] > 0 and timings["imputation"] >= 0
    for a, b in zip(inline, background):
        # One intra-op thread may sum in another order than several: float32 rounding, far below ROAD's 1e-4.
        for field in ("deletion", "insertion", "road_morf", "road_lerf"):
            assert np.abs(getattr(a, field) - getattr(b, field)).max() < 1e-6
        assert a.masked == pytest.approx(b.masked, abs=1e-6)


def test_a_failing_background_solve_reaches_the_caller(monkeypatch) -> None:
    model, inputs, samples = _model_and_samples()

    def failing(*args, **kwargs):
        raise RuntimeError("solver broke")

    monkeypatch.setattr(faithfulness, "impute_removed", failing)
    monkeypatch.setattr(faithfulness, "ROAD_IN_BACKGROUND", True)
    with pytest.raises(RuntimeError, match="solver broke"):
        measure_faithfulness(model, inputs, samples, 5, batch_size=4)
