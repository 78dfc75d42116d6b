import pytest
import torch

from mmseg_prune.analysis import (Latency, check_quiet, measure_latency,
                                  paired_speedup, runs_to_span,
                                  segmentor_forward, time_interleaved)
from mmseg_prune.analysis import latency as latency_module
from mmseg_prune.utils import PruneError


def test_latency_is_the_median_of_the_timed_runs(small_model, monkeypatch):
    # A fake clock: each timed forward takes the next of these durations.
    durations = iter([0.005, 0.001, 0.003])
    clock = [0.0]
    forwards = []

    def forward(inputs):
        forwards.append((tuple(inputs.shape), torch.is_grad_enabled()))
        if len(forwards) > 1:  # the first is the warm-up, untimed
            clock[0] += next(durations)

    monkeypatch.setattr(latency_module.time, 'perf_counter',
                        lambda: clock[0])
    monkeypatch.setattr(small_model, '_forward', forward)
    small_model.train()
    latency = measure_latency(small_model, (64, 96), warmup=1, runs=3)
    assert latency.median == pytest.approx(3.0)  # ms: the median of 5, 1, 3
    assert latency.times == pytest.approx([5.0, 1.0, 3.0])
    # Timed without autograd, on the stated shape.
    assert forwards == [((1, 3, 64, 96), False)] * 4
    assert small_model.training  # the mode is restored


def test_the_image_takes_the_parameters_dtype():
    model = torch.nn.Conv2d(3, 2, 1).double().eval()
    model._forward = model.forward
    outputs = segmentor_forward(model, (5, 7))()
    assert outputs.dtype == torch.float64 and outputs.shape == (1, 2, 5, 7)


def test_spread_is_the_interquartile_range_over_the_median():
    steady = Latency([100.0, 101.0, 99.0, 100.5, 150.0])
    # Quartiles 100.0 and 101.0 of the sorted runs; the outlier is ignored.
    assert steady.median == 100.5
    assert steady.spread == pytest.approx(1.0 / 100.5)
    assert steady.steady and '100.5 ms' in str(steady)
    unsteady = Latency([80.0, 100.0, 120.0, 100.0, 90.0])
    assert unsteady.spread == pytest.approx((100 - 90) / 100)
    assert not Latency([50.0, 100.0, 120.0]).steady
    assert 'unsteady' in str(Latency([50.0, 100.0, 120.0]))


def test_candidates_are_timed_in_turn_after_their_warm_up():
    order = []
    clock = [0.0]

    def candidate(name, ms):
        def run():
            order.append(name)
            clock[0] += ms / 1000
        return run

    result = time_interleaved(
        dict(dense=candidate('dense', 20), pruned=candidate('pruned', 10)),
        runs=3, warmup=1, clock=lambda: clock[0])
    assert order == ['dense', 'pruned'] * 4
    assert result['dense'].median == pytest.approx(20)
    assert result['pruned'].median == pytest.approx(10)


def test_a_busy_machine_is_reported(monkeypatch):
    monkeypatch.setattr(latency_module.os, 'cpu_count', lambda: 2)
    monkeypatch.setattr(latency_module, 'busy_cores', lambda interval: 1.6)
    with pytest.warns(UserWarning, match='1.6 of 2 cores'):
        assert check_quiet(2) == 1.6
    with pytest.raises(PruneError, match='Stop the other jobs'):
        check_quiet(2, strict=True)
    # One thread still has a free core beside 0.6 busy ones.
    monkeypatch.setattr(latency_module, 'busy_cores', lambda interval: 0.6)
    assert check_quiet(1, strict=True) == 0.6


def test_busy_cores_reads_the_machine():
    busy = latency_module.busy_cores(0.05)
    assert busy is None or 0 <= busy <= latency_module.os.cpu_count()


def test_the_speed_up_pairs_each_run_with_the_one_beside_it():
    dense = Latency([100.0, 200.0, 400.0])
    pruned = Latency([80.0, 50.0, 100.0])
    # Turn by turn: 1.25, 4 and 4; the median of the ratios is 4, where the
    # ratio of the medians (200 / 80) would be 2.5.
    assert paired_speedup(dense, pruned) == pytest.approx(4.0)
    assert paired_speedup(pruned, dense) == pytest.approx(0.25)


def test_short_runs_are_timed_more_often():
    assert runs_to_span(50.0) == 60  # 3 s of 50 ms runs
    assert runs_to_span(1000.0) == 9  # at least 9
    assert runs_to_span(2000.0, least=5) == 5
    assert runs_to_span(20.0) == 100  # at most 100
