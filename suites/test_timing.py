"""The timing layer's logic, on CPU and with a scripted clock (no test here depends on the machine's
speed): warm-up that waits for the step time to settle on CUDA, block sizing, statistics derived from
raw samples, FLOPs of exactly the timed step, and the measured peak."""
import pytest

from harness.bench.counting import count_work
from harness.bench.run import measure, step_flops
from harness.bench import timing
from harness.bench.peak import measure_peak_tflops
from harness.catalog.meta_probe import build
from harness.bench.spec import BenchSpec, Measurement

SPEC = BenchSpec("unet3d", (1, 16, 16, 16), 4, "inference")


class ScriptedClock:
    """perf_counter that a fake step advances by scripted durations."""

    def __init__(self, durations):
        self.now, self.durations, self.calls = 0.0, list(durations), 0

    def perf_counter(self):
        return self.now

    def step(self):
        self.now += self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1


@pytest.fixture
def clock(monkeypatch):
    def make(durations):
        fake = ScriptedClock(durations)
        monkeypatch.setattr(timing.time, "perf_counter", fake.perf_counter)
        return fake
    return make


def test_cuda_warm_up_goes_on_until_the_step_time_settles(clock):
    fake = clock([5.0, 0.9, 0.5, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1])  # compile, autotune, then steady
    warm = timing.warm_up(fake.step, warmup=2, device="cuda")
    assert warm.setup_s == 5.0 and warm.settled
    assert warm.steps == 8 and fake.calls == 8  # first call + 0.9 ... 0.1, 0.1, 0.1 (three agree)


def test_cuda_warm_up_stops_at_its_cap_when_the_time_never_settles(clock):
    fake = clock([1.0, 0.1, 0.2] * 40)
    warm = timing.warm_up(fake.step, warmup=1, device="cuda")
    assert not warm.settled and warm.steps == timing.SETTLE_MAX_STEPS


def test_cuda_warm_up_stops_at_its_wall_clock_cap_when_the_time_never_settles(clock):
    fake = clock([2.0] + [10.0, 20.0] * 40)  # never settles; 30 s pass after the third timed step
    warm = timing.warm_up(fake.step, warmup=1, device="cuda")
    assert warm == timing.WarmUp(2.0, 4, False) and fake.calls == 4  # first call + 10 + 20 + 10 (40 s > 30 s)
    assert timing.SETTLE_MAX_S == 30.0


def test_cuda_warm_up_runs_the_requested_steps_even_past_the_wall_clock_cap(clock):
    fake = clock([2.0] + [40.0, 80.0] * 40)
    warm = timing.warm_up(fake.step, warmup=6, device="cuda")
    assert warm == timing.WarmUp(2.0, 6, False) and fake.calls == 6


def test_cuda_warm_up_that_settles_before_the_wall_clock_cap_is_settled(clock):
    fake = clock([2.0, 9.0, 9.0, 9.0, 1.0])  # 27 s of settled steps: under the cap
    warm = timing.warm_up(fake.step, warmup=1, device="cuda")
    assert warm == timing.WarmUp(2.0, 4, True) and fake.calls == 4


def test_a_measurement_whose_warm_up_did_not_settle_is_not_warm(monkeypatch):
    unsettled = Measurement(SPEC, latency_s=(0.1,), block_s=(1.0,), block_steps=10, warmup_steps=50,
                            warmup_settled=False)
    assert not unsettled.warm and Measurement(SPEC, latency_s=(0.1,), warmup_steps=50).warm

    from harness.bench import run
    monkeypatch.setattr(run, "warm_up", lambda step, warmup, device: timing.WarmUp(2.0, 50, False))
    monkeypatch.setattr(run.PeakCache, "get", lambda self, device, precision: 1.0)
    monkeypatch.setattr(run, "block_steps", lambda step_s: 1)
    m = measure(BenchSpec("unet2d", (1, 16, 16), 1, "inference", overrides="base_c=2", rounds=1, blocks=1))
    assert m.error == "" and m.warmup_steps == 50 and not m.warmup_settled and not m.warm


def test_cpu_warm_up_runs_the_requested_count_and_none_means_cold(clock):
    fake = clock([3.0, 1.0, 2.0, 1.5])
    warm = timing.warm_up(fake.step, warmup=3, device="cpu")
    assert (warm.setup_s, warm.steps, warm.settled, fake.calls) == (3.0, 3, True, 3)
    assert timing.warm_up(fake.step, warmup=0, device="cpu") == timing.WarmUp(None, 0, False)


def test_blocks_last_long_enough_to_hide_the_per_step_overhead():
    assert timing.block_steps(0.028) == 9  # 9 x 28 ms >= 0.25 s
    assert timing.block_steps(2.0) == 1
    assert timing.block_steps(1e-9) == timing.MAX_BLOCK_STEPS
    assert timing.block_steps(0.0) == 1


def test_a_block_is_timed_once_around_back_to_back_calls(clock):
    fake = clock([0.01, 0.02, 0.03])
    assert timing.time_block(fake.step, 3, "cpu") == pytest.approx(0.06)
    assert timing.time_blocks(fake.step, 2, 2, "cpu") == pytest.approx((0.06, 0.06))


def test_latency_and_throughput_statistics_come_from_the_raw_samples():
    m = Measurement(SPEC, latency_s=(0.4, 0.1, 0.2, 0.3, 0.5), block_s=(1.0, 0.8, 0.9), block_steps=10,
                    warmup_steps=1, step_flop=int(2e12), peak_tflops=100.0)
    assert m.latency_ms == pytest.approx(300.0)
    assert m.latency_iqr_ms == pytest.approx(200.0)
    assert m.latency_p90_ms == pytest.approx(460.0)
    assert m.step_ms == pytest.approx(90.0)  # median block / steps: not the synchronized latency
    assert m.samples_per_s == pytest.approx(4 / 0.09)
    assert m.achieved_tflops == pytest.approx(2e12 / 0.09 / 1e12)
    assert m.mfu == pytest.approx(m.achieved_tflops / 100.0)
    assert m.warm and not Measurement(SPEC, latency_s=(0.1,)).warm


def test_step_flops_are_the_forward_in_inference_and_forward_plus_backward_in_training():
    sample_work = count_work(build("unet3d", {"base_c": 4}), __import__("torch").randn(1, 1, 16, 16, 16))
    inference = step_flops(BenchSpec("unet3d", (1, 16, 16, 16), 2, "inference", overrides="base_c=4"))
    train = step_flops(BenchSpec("unet3d", (1, 16, 16, 16), 2, "train", overrides="base_c=4"))
    assert inference == 2 * 2 * sample_work.conv_linear_macs  # FLOPs = 2 x MACs, for the whole batch
    assert 2 * inference < train < 3 * inference  # backward: gradients of weights and (but the first) inputs


def test_a_measured_row_has_both_timings_work_and_utilization():
    m = measure(BenchSpec("unet2d", (1, 32, 32), 2, "train", overrides="base_c=4", warmup=1, rounds=2, blocks=2))
    assert m.error == "" and m.warm and len(m.latency_s) == 2 and len(m.block_s) == 2 and m.block_steps >= 1
    assert m.step_flop > 0 and m.peak_tflops > 0 and 0 < m.mfu
    assert m.setup_s > 0


def test_the_cpu_peak_is_measured_not_typed_in():
    assert 0 < measure_peak_tflops("cpu", "fp32") < 1000


def test_a_depthwise_convolution_backward_costs_twice_its_forward_not_groups_times_more():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from harness.bench.run import _conv_backward_flop

    conv = torch.nn.Conv3d(64, 64, 3, padding=1, groups=64, device="meta")
    x = torch.empty(2, 64, 8, 8, 8, device="meta", requires_grad=True)
    with FlopCounterMode(display=False) as forward:
        conv(x)
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop}) as step:
        conv(x).sum().backward()
    assert step.get_total_flops() == 3 * forward.get_total_flops()


UNSETTLING_PLUGIN = """
from harness.bench import run, timing


def _never_settles(step, warmup, device):
    step()
    return timing.WarmUp(2.0, 50, False)


run.warm_up = _never_settles
"""


def test_a_sweep_whose_warm_up_never_settles_counts_it_and_exits_1(tmp_path):
    """An unsettled warm-up must not pass silently: the row is written (warm=False, measured again on resume),
    the closing summary counts it, and the session exits 1."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from harness.store.csvfile import read_rows

    (tmp_path / "unsettle.py").write_text(UNSETTLING_PLUGIN)
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "harness", "bench", "-q", "-p", "unsettle", "--profile", "smoke",
                           "--models", "unet2d", "--set", "base_c=2", "--warmup", "1", "--runs-root", str(tmp_path / "r"),
                           "--run-id", "u"], cwd=repo, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])})
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "0 measured, 0 failed, 0 refused, 2 unsettled" in output and "never settled" in output
    rows = read_rows(tmp_path / "r" / "u" / "results.csv").rows
    assert len(rows) == 2 and all(r["warm"] == "False" and r["error"] == "" for r in rows)


def test_each_configuration_says_how_long_the_sweep_has_left():
    from harness.pytest_plugin.session import HarnessSession

    session = HarnessSession.__new__(HarnessSession)
    session.total, session.started, session.resumed, session.busy_s = 10, 1, 0, 0.0
    assert session.time_left() == ""  # nothing measured yet: no estimate
    session.started, session.busy_s = 5, 40.0  # 4 done in 40 s; this one and 5 more to come
    assert session.time_left() == " (about 1m00s left)"
    session.resumed = 2  # two were skipped (already in the run): the mean is over the 2 measured
    assert session.time_left() == " (about 2m00s left)"
