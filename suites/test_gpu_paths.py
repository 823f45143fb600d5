"""The CUDA code paths, tested on the CPU with fakes: torch.cuda's synchronize, events and memory
statistics, torch.compile, NVML and out-of-memory errors are replaced by recorders, so a wrong unit, a
missing synchronization, a swallowed error or a search that overshoots fails here, on a machine without
a GPU. Nothing here measures anything real or depends on the machine's speed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

from types import SimpleNamespace

import pytest
import torch

from harness.bench import environment
from harness.evidence import validate
from harness.envelope import check
from harness.bench import memory, peak, run, timing, workload
from harness.bench.spec import BenchSpec, Measurement
from harness.store.schema import ENV_COLUMNS

REPO = Path(__file__).resolve().parent.parent
CUDA_SPEC = BenchSpec("unet2d", (1, 32, 32), 2, "inference", device="cuda", overrides="base_c=4")
CPU_SPEC = BenchSpec("unet2d", (1, 32, 32), 2, "inference", overrides="base_c=4")
OOM_TEXT = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 139.8 GiB total capacity)"


@pytest.fixture(autouse=True)
def one_thread():
    """The few real steps here are tiny; on a busy 2-core machine two threads contend for seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FakeCuda:
    """torch.cuda.synchronize and torch.cuda.Event as recorders; events report scripted milliseconds."""

    def __init__(self, monkeypatch, elapsed_ms=(0.0,)):
        self.log: list[str] = []
        self.elapsed_ms, self.events = list(elapsed_ms), []
        monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: self.log.append("cuda.synchronize"))
        monkeypatch.setattr(torch.cuda, "Event", self.event)

    def event(self, enable_timing=False, **_):
        fake = self

        class Event:
            index = len(fake.events)
            recorded_at = None

            def record(self, stream=None):
                self.recorded_at = len(fake.log)
                fake.log.append(f"event{self.index}.record")

            def synchronize(self):
                fake.log.append(f"event{self.index}.synchronize")

            def elapsed_time(self, end):
                fake.log.append(f"event{self.index}.elapsed_time(event{end.index})")
                if not enable_timing:
                    raise RuntimeError("Both events must be created with argument 'enable_timing=True'")
                if self.recorded_at is None or end.recorded_at is None:
                    raise RuntimeError("Both events must be recorded before calculating elapsed time")
                ms = fake.elapsed_ms.pop(0)
                return ms if self.recorded_at < end.recorded_at else -ms  # from the later one: negative

        made = Event()
        self.events.append(made)
        return made


# --- find_max_batch ---------------------------------------------------------------------------------------

class FakeOOMWorkload:
    def __init__(self, batch, fits_up_to, tried):
        self.batch, self.fits_up_to = batch, fits_up_to
        tried.append(batch)

    def step(self):
        if self.batch > self.fits_up_to:
            raise torch.OutOfMemoryError(OOM_TEXT)
        return torch.zeros(1)


@pytest.fixture
def memory_holds(monkeypatch):
    """find_max_batch against a fake GPU where batches up to N fit; returns the batches it tried."""
    def install(n):
        tried: list[int] = []
        monkeypatch.setattr(run, "resolve", lambda spec: SimpleNamespace(spec=spec, refusal=""))
        monkeypatch.setattr(run, "prepare", lambda config, device=None: FakeOOMWorkload(config.spec.batch, n, tried))
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
        return tried
    return install


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 8, 13, 16, 100, 4096])
@pytest.mark.parametrize("fits_up_to", [0, 1, 2, 3, 5, 7, 8, 9, 16, 17, 63, 64, 100, 5000])
def test_the_largest_batch_never_exceeds_the_limit_and_no_batch_above_it_is_tried(memory_holds, fits_up_to, limit):
    tried = memory_holds(fits_up_to)
    found = run.find_max_batch(CUDA_SPEC, limit=limit)
    assert found == (None if fits_up_to == 0 else min(fits_up_to, limit))
    assert max(tried) <= limit
    assert len(tried) <= 2 * limit.bit_length() + 1  # doubling, then bisection: logarithmic


def test_the_limit_is_returned_when_it_fits_even_when_it_is_not_a_power_of_two(memory_holds):
    tried = memory_holds(10 ** 6)
    assert run.find_max_batch(CUDA_SPEC, limit=100) == 100
    assert 100 in tried and max(tried) == 100


def test_find_max_batch_refuses_the_cpu_and_a_limit_below_one(memory_holds):
    memory_holds(8)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        run.find_max_batch(CPU_SPEC)
    with pytest.raises(ValueError, match="limit must be at least 1"):
        run.find_max_batch(CUDA_SPEC, limit=0)


def test_find_max_batch_lets_other_errors_through(monkeypatch, memory_holds):
    memory_holds(8)

    def broken(spec, device=None):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR")
    monkeypatch.setattr(run, "prepare", broken)
    with pytest.raises(RuntimeError, match="CUDNN_STATUS_INTERNAL_ERROR"):
        run.find_max_batch(CUDA_SPEC, limit=8)


class FakeMomentumWorkload:
    """A training step whose second call needs more memory than its first (SGD's momentum buffers exist from
    the end of step 1): step 1 fits up to ``2 * n``, every later step only up to ``n``."""

    def __init__(self, batch, n, tried):
        self.batch, self.n, self.steps = batch, n, 0
        tried.append(batch)

    def step(self):
        self.steps += 1
        if self.batch > (2 * self.n if self.steps == 1 else self.n):
            raise torch.OutOfMemoryError(OOM_TEXT)
        return torch.zeros(1)


def test_find_max_batch_judges_the_steady_state_step_not_the_first(monkeypatch, memory_holds):
    memory_holds(0)
    tried: list[int] = []
    monkeypatch.setattr(run, "prepare", lambda config, device=None: FakeMomentumWorkload(config.spec.batch, 6, tried))
    assert run.find_max_batch(CUDA_SPEC, limit=64) == 6  # the first step alone would say 12


def test_a_failing_search_keeps_the_measured_row_with_the_failure_as_its_error():
    measured = Measurement(CUDA_SPEC, latency_s=(0.01,), block_s=(0.02,), block_steps=2, warmup_steps=1)

    def broken(spec):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a "
                           "non-contiguous input.\nsecond line")
    kept = run.with_max_batch(measured, search=broken, predict=lambda spec: 7)
    assert kept.error == "find_max_batch failed: RuntimeError: cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error " \
                         "may appear if you passed in a non-contiguous input."
    assert kept.latency_s == measured.latency_s and kept.step_ms == measured.step_ms  # the numbers stay
    found = run.with_max_batch(measured, search=lambda spec: 5, predict=lambda spec: 7)
    assert (found.max_batch, found.predicted_max_batch, found.error) == (5, 7, "")

    def no_prediction(spec):
        raise NotImplementedError("a user model's op has no fake-tensor kernel")
    unpredicted = run.with_max_batch(measured, search=lambda spec: 5, predict=no_prediction)
    assert (unpredicted.max_batch, unpredicted.predicted_max_batch, unpredicted.error) == (5, None, "")


@pytest.mark.parametrize("total_mb, expected", [(99.0, None), (100.0, 1), (1000.0, 19), (1049.9, 19), (1050.0, 20),
                                                (10 ** 7, 4096)])
def test_the_predicted_largest_batch_is_the_largest_whose_predicted_peak_fits(monkeypatch, total_mb, expected):
    """Peak = 50 MB of weights and state + 50 MB per sample; a handful of predictions, not one per batch."""
    monkeypatch.setattr(run, "resolve", lambda spec: SimpleNamespace(spec=spec, refusal=""))
    asked: list[int] = []

    def peak(spec):
        asked.append(spec.batch)
        return 50.0 + 50.0 * spec.batch
    assert run.predict_max_batch(CUDA_SPEC, total_mb=total_mb, peak_mb=peak) == expected
    assert len(asked) <= 8


def test_the_predicted_largest_batch_stops_where_the_envelope_refuses(monkeypatch):
    monkeypatch.setattr(run, "resolve", lambda spec: SimpleNamespace(spec=spec, refusal="unsupported: too big" if
                                                                     spec.batch > 9 else ""))
    assert run.predict_max_batch(CUDA_SPEC, total_mb=10 ** 6, peak_mb=lambda spec: float(spec.batch)) == 9


def test_both_searches_start_from_the_smallest_batch_the_envelope_accepts(monkeypatch):
    """Training a ResNet-encoder UNet at a small patch refuses batch 1 (layer4's BatchNorm): that is no reason
    to report that nothing fits."""
    monkeypatch.setattr(run, "resolve", lambda spec: SimpleNamespace(spec=spec, refusal="unsupported: BatchNorm" if
                                                                     spec.batch < 2 else ""))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    tried: list[int] = []
    monkeypatch.setattr(run, "prepare", lambda config, device=None: FakeOOMWorkload(config.spec.batch, 5, tried))
    assert run.find_max_batch(CUDA_SPEC, limit=64) == 5 and min(tried) == 2
    assert run.predict_max_batch(CUDA_SPEC, total_mb=7.0, peak_mb=lambda spec: float(spec.batch)) == 7


def test_the_predicted_largest_batch_agrees_with_the_memory_model_at_its_edge():
    """The real memory model (fake tensors on the CPU): the answer fits and the next batch does not."""
    from dataclasses import replace

    from harness.memory import predict_peak_memory  # (importing the room registers its predictor)

    spec = BenchSpec("unet2d", (1, 32, 32), 2, "train", device="cuda", overrides="base_c=4")
    found = run.predict_max_batch(spec, total_mb=40.0)
    assert found is not None and found > 1
    assert predict_peak_memory(replace(spec, batch=found)).peak_mb <= 40.0 < \
        predict_peak_memory(replace(spec, batch=found + 1)).peak_mb


def test_the_row_carries_both_largest_batches(tmp_path):
    from harness.store.run_store import RunStore

    m = Measurement(CUDA_SPEC, latency_s=(0.01,), block_s=(0.02,), block_steps=2, warmup_steps=1, max_batch=12,
                    predicted_max_batch=13)
    row = RunStore(tmp_path / "run").append(m, {})
    assert (row["max_batch"], row["predicted_max_batch"]) == (12, 13)


# --- timing on CUDA ---------------------------------------------------------------------------------------

def test_a_cuda_block_is_timed_by_events_around_back_to_back_steps_and_reported_in_seconds(monkeypatch):
    cuda = FakeCuda(monkeypatch, elapsed_ms=[123.5])
    seconds = timing.time_block(lambda: cuda.log.append("run"), 3, "cuda")
    assert seconds == pytest.approx(0.1235)  # elapsed_time is in milliseconds
    assert cuda.log == ["cuda.synchronize",  # earlier work must not land inside the block
                        "event0.record", "run", "run", "run", "event1.record",
                        "event1.synchronize",  # the end event has happened before it is read
                        "event0.elapsed_time(event1)"]


def test_cuda_blocks_are_one_event_pair_each(monkeypatch):
    cuda = FakeCuda(monkeypatch, elapsed_ms=[250.0, 125.0])
    assert timing.time_blocks(lambda: None, 5, 2, "cuda") == pytest.approx((0.25, 0.125))
    assert cuda.log.count("cuda.synchronize") == 2 and len(cuda.events) == 4


def test_a_cuda_step_synchronizes_and_a_cpu_step_does_not(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    timing.synchronize("cpu")
    assert cuda.log == []
    timing.synchronize("cuda")
    assert cuda.log == ["cuda.synchronize"]


def test_the_workload_step_is_the_run_plus_a_synchronization(monkeypatch):
    log = []
    monkeypatch.setattr(workload, "synchronize", log.append)
    wl = workload.prepare(CPU_SPEC)
    wl.run()
    assert log == []  # run: issued, not waited for (throughput blocks repeat it)
    wl.step()
    assert log == ["cpu"]  # step: the same, synchronized on the spec's device (latency samples time it)


# --- peak memory on CUDA ----------------------------------------------------------------------------------

def test_cuda_peak_memory_resets_before_the_step_synchronizes_after_it_and_reports_mib(monkeypatch):
    log = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append("synchronize"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: log.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: log.append("allocated") or 3 * 2 ** 20 + 2 ** 19)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: log.append("reserved") or 5 * 2 ** 30)

    def step():
        log.append("step")
        return "output"
    result, allocated_mb, reserved_mb, kind = memory.peak_memory(step, "cuda")
    assert (result, allocated_mb, reserved_mb, kind) == ("output", 3.5, 5 * 1024.0, "cuda_allocated")
    assert log.index("reset") < log.index("step") < log.index("synchronize", log.index("step")) < log.index("allocated")
    assert log[0] == "synchronize"  # earlier work finishes before the peak is reset
    assert log.count("step") == 1


# --- measured peak FLOP/s ---------------------------------------------------------------------------------

class FakeMatrix:
    def __init__(self, n):
        self.n = n

    def to(self, dtype):
        self.dtype = dtype
        return self


@pytest.fixture
def matmuls(monkeypatch):
    """Square 'matrices' and a scripted ``_one_call_s``: per size, a list of call durations (the last
    repeats). Returns the (size, device) of every timed call."""
    def install(durations):
        calls, per_size = [], {}

        def randn(n, m, device=None):
            assert n <= 2 * max(peak.MAX_SIZE.values()), f"the matmul grew to {n}, past every cap"
            return FakeMatrix(n)
        monkeypatch.setattr(torch, "randn", randn)

        def one_call_s(a, b, device):
            assert a.n == b.n and a.dtype == b.dtype
            calls.append((a.n, device))
            script = durations(a.n)
            i = per_size.get(a.n, 0)
            per_size[a.n] = i + 1
            return script[min(i, len(script) - 1)]
        monkeypatch.setattr(peak, "_one_call_s", one_call_s)
        return calls
    return install


def test_the_peak_grows_the_matmul_until_one_call_is_long_enough_then_keeps_the_best_of_half_a_second(matmuls):
    # The first call at each size is initialisation (slow, never used); the second decides the growth.
    scripts = {256: [9.0, 0.001], 512: [9.0, 0.019], 1024: [9.0, 0.02, 0.2, 0.1, 0.3, 0.01]}  # MIN_CALL_S: 0.02
    calls = matmuls(lambda n: scripts[n])
    tflops = peak.measure_peak_tflops("cpu", "fp32")
    assert [n for n, _ in calls] == [256, 256, 512, 512, 1024, 1024, 1024, 1024, 1024]  # 0.2+0.1+0.3 >= 0.5
    assert tflops == pytest.approx(2 * 1024 ** 3 / 0.1 / 1e12)  # FLOPs = 2 n^3; the best call counts


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_peak_matmul_stops_growing_at_the_device_cap(matmuls, device):
    cap = peak.MAX_SIZE[device]
    calls = matmuls(lambda n: [9.0, 1e-6] if n < cap else [9.0, 1e-6, 0.125])
    tflops = peak.measure_peak_tflops(device, "bf16")
    sizes = [n for n, _ in calls]
    assert max(sizes) == cap and sizes[-4:] == [cap] * 4  # 4 x 0.125 s reaches MIN_TOTAL_S exactly
    assert sizes.count(cap) == 2 + 4 and {d for _, d in calls} == {device}
    assert tflops == pytest.approx(2 * cap ** 3 / 0.125 / 1e12)


def test_one_matmul_call_on_cuda_is_synchronized_on_both_sides(monkeypatch):
    log, now = [], iter([10.0, 10.25])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append("synchronize"))
    monkeypatch.setattr(torch, "mm", lambda a, b: log.append("mm"))
    monkeypatch.setattr(peak.time, "perf_counter", lambda: log.append("clock") or next(now))
    assert peak._one_call_s(None, None, "cuda") == pytest.approx(0.25)
    assert log == ["synchronize", "clock", "mm", "synchronize", "clock"]


# --- workload: compile modes and backend flags --------------------------------------------------------------

@pytest.fixture
def compile_recorder(monkeypatch):
    modes = []

    def fake_compile(model, mode=None, **_):
        modes.append(mode)

        def compiled(*args):
            modes.append("called")
            return model(*args)
        return compiled
    monkeypatch.setattr(torch, "compile", fake_compile)
    return modes


@pytest.mark.parametrize("exec_mode, expected, mode", [("eager", [], "inference"),
                                                       ("compile", ["default", "called"], "inference"),
                                                       ("cudagraphs", ["reduce-overhead", "called"], "inference"),
                                                       ("compile", ["default", "called"], "train")])
def test_each_exec_mode_compiles_with_its_torch_compile_mode_and_the_step_runs_the_compiled_model(
        compile_recorder, exec_mode, expected, mode):
    spec = BenchSpec("unet2d", (1, 16, 16), 2, mode, overrides="base_c=2", exec_mode=exec_mode)
    workload.prepare(spec).run()
    assert compile_recorder == expected


def test_work_is_counted_on_the_uncompiled_model(compile_recorder):
    spec = BenchSpec("unet2d", (1, 16, 16), 2, "train", overrides="base_c=2", exec_mode="cudagraphs")
    workload.prepare(spec, device="meta").run()
    assert compile_recorder == []


@pytest.fixture
def cudnn_benchmark(monkeypatch):
    """Pretend CUDA is there; the flag is put back after the test."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)


@pytest.mark.parametrize("wanted", [True, False])
def test_cuda_workloads_set_cudnn_benchmark_from_the_spec_whatever_it_was(cudnn_benchmark, wanted):
    for before in (True, False):
        torch.backends.cudnn.benchmark = before
        workload.configure_backends(BenchSpec("unet3d", (1, 16, 16, 16), 1, "inference", device="cuda",
                                              cudnn_benchmark=wanted), "cuda")
        assert torch.backends.cudnn.benchmark is wanted


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_cpu_and_meta_workloads_leave_the_backend_flags_alone(cudnn_benchmark, device):
    torch.backends.cudnn.benchmark = True
    workload.configure_backends(BenchSpec("unet3d", (1, 16, 16, 16), 1, "inference", cudnn_benchmark=False), device)
    assert torch.backends.cudnn.benchmark is True


def test_cuda_without_a_gpu_is_refused_before_anything_is_built(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="is_available"):
        workload.configure_backends(CUDA_SPEC, "cuda")
    with pytest.raises(RuntimeError, match="is_available"):
        workload.prepare(CUDA_SPEC)


def test_prepare_configures_the_backends_for_the_device_it_builds_on(monkeypatch):
    seen = []
    monkeypatch.setattr(workload, "configure_backends", lambda spec, device: seen.append((spec, device)))
    workload.prepare(CPU_SPEC)
    workload.prepare(CPU_SPEC, device="meta")
    assert seen == [(CPU_SPEC, "cpu"), (CPU_SPEC, "meta")]


# --- failures are rows -------------------------------------------------------------------------------------

class OOMAtStep:
    model = None

    def step(self):
        raise torch.OutOfMemoryError(OOM_TEXT)

    run = step


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("where", ["prepare", "step"])
def test_out_of_memory_becomes_an_error_row_and_the_cache_is_emptied_on_cuda(monkeypatch, device, where):
    def fake_prepare(spec, device=None):
        if where == "prepare":
            raise torch.OutOfMemoryError(OOM_TEXT)
        return OOMAtStep()
    emptied = []
    monkeypatch.setattr(run, "prepare", fake_prepare)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    m = run.measure(BenchSpec("unet2d", (1, 32, 32), 2, "train", device=device, overrides="base_c=4"))
    assert m.error.startswith("out of memory: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert m.latency_s == () and m.block_s == () and not m.warm
    assert emptied == ([True] if device == "cuda" else [])


@pytest.mark.parametrize("model, shape", [("resnet50-3d", (2, 1, 32, 32, 32)), ("unet3d-resnet50", (2, 1, 32, 32, 32))])
def test_shortcut_a_runs_on_cuda_only_in_float32_without_no_cuda(model, shape):
    for precision in ("bf16", "fp16"):
        verdict = check(model, shape, {"shortcut_type": "A"}, "inference", "cuda", precision)
        assert not verdict.supported and verdict.constraint == "shortcut-A-device"
        assert "shortcut A" in verdict.message() and f"on cuda with {precision}" in verdict.message()
    assert check(model, shape, {"shortcut_type": "A"}, "train", "cuda", "fp32").supported
    refused = check(model, shape, {"shortcut_type": "A", "no_cuda": True}, "inference", "cuda", "fp32")
    assert not refused.supported and refused.constraint == "shortcut-A-device"
    assert check(model, shape, {"shortcut_type": "A"}, "inference", "cpu", "bf16").supported  # all on the CPU
    assert check(model, shape, {"shortcut_type": "B"}, "inference", "cuda", "bf16").supported
    row = run.measure(BenchSpec(model, shape[1:], shape[0], "inference", device="cuda", precision="bf16",
                                overrides="shortcut_type=A"))
    assert row.error.startswith("unsupported:") and "shortcut A" in row.error  # refused before anything runs


# --- NVML and the environment --------------------------------------------------------------------------------

def fake_pynvml(fail_at=None, handles=None):
    nvml = types.ModuleType("pynvml")
    nvml.calls = []
    nvml.NVML_CLOCK_SM, nvml.NVML_CLOCK_MEM = 1, 2

    class NVMLError(Exception):
        pass
    nvml.NVMLError = NVMLError

    def call(name, value):
        def function(*args):
            nvml.calls.append((name, *args))
            if name == fail_at:
                raise NVMLError("Not Supported")
            return value(*args) if callable(value) else value
        return function
    nvml.nvmlInit = call("init", None)
    nvml.nvmlShutdown = call("shutdown", None)
    nvml.nvmlDeviceGetHandleByIndex = call("handle", lambda index: f"handle{index}")
    nvml.nvmlDeviceGetClockInfo = call("clock", lambda handle, kind: {1: 1755, 2: 3201}[kind])
    nvml.nvmlDeviceGetMaxClockInfo = call("max_clock", lambda handle, kind: {1: 1980, 2: 3201}[kind])
    nvml.nvmlDeviceGetEnforcedPowerLimit = call("power", lambda handle: 700_000)  # milliwatts
    return nvml


NVML_KEYS = {"gpu_sm_clock_mhz", "gpu_mem_clock_mhz", "gpu_max_sm_clock_mhz", "gpu_power_limit_w", "gpu_nvml"}


def test_nvml_reads_clocks_in_mhz_and_the_power_limit_in_watts_of_the_asked_gpu_and_shuts_down(monkeypatch):
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    facts = environment._nvml(3)
    assert facts == {"gpu_sm_clock_mhz": 1755, "gpu_mem_clock_mhz": 3201, "gpu_max_sm_clock_mhz": 1980,
                     "gpu_power_limit_w": 700.0, "gpu_nvml": "ok"}
    assert ("handle", 3) in nvml.calls and all(c[1] == "handle3" for c in nvml.calls if c[0] in ("clock", "power"))
    assert nvml.calls[0] == ("init",) and nvml.calls[-1] == ("shutdown",)


@pytest.mark.parametrize("fail_at", ["handle", "clock", "max_clock", "power"])
def test_an_nvml_error_gives_empty_values_with_the_reason_and_still_shuts_nvml_down(monkeypatch, fail_at):
    nvml = fake_pynvml(fail_at=fail_at)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    facts = environment._nvml(0)
    assert set(facts) == NVML_KEYS and facts["gpu_nvml"] == "NVML error: Not Supported"
    assert all(facts[k] == "" for k in NVML_KEYS - {"gpu_nvml"})
    assert nvml.calls[-1] == ("shutdown",)


def test_nvml_that_cannot_start_or_is_missing_is_said_so(monkeypatch):
    nvml = fake_pynvml(fail_at="init")
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    facts = environment._nvml(0)
    assert set(facts) == NVML_KEYS and facts["gpu_nvml"] == "NVML error: Not Supported"
    assert ("shutdown",) not in nvml.calls  # never initialised: nothing to shut down
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    facts = environment._nvml(0)
    assert set(facts) == NVML_KEYS and facts["gpu_nvml"] == "nvidia-ml-py not installed"


def test_every_nvml_fact_has_a_results_column():
    assert NVML_KEYS <= set(ENV_COLUMNS)


def test_the_cuda_environment_records_the_gpu_its_flags_and_nvml(monkeypatch):
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91900)
    monkeypatch.setattr(environment, "_gpu_driver", lambda: "580.95")
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:  # the opposite of torch's defaults, so a swap shows (monkeypatch cannot undo cuBLAS's flag)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = False, True
        env = environment.capture("cuda")
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    assert (env["device_name"], env["cuda"], env["cudnn"], env["gpu_driver"]) == ("NVIDIA H200", "13.0", "91900", "580.95")
    assert env["cudnn_tf32"] is False and env["matmul_tf32"] is True
    assert (env["gpu_sm_clock_mhz"], env["gpu_max_sm_clock_mhz"], env["gpu_power_limit_w"]) == (1755, 1980, 700.0)
    assert env["gpu_nvml"] == "ok" and ("handle", 2) in nvml.calls  # the current device, not GPU 0
    assert set(ENV_COLUMNS) <= set(env)  # every environment column is filled on CUDA
    cpu = environment.capture("cpu")
    assert cpu["cudnn"] == "" and cpu["matmul_tf32"] == "" and not NVML_KEYS & set(cpu)


# --- validate on CUDA ------------------------------------------------------------------------------------------

@pytest.fixture
def fake_validation(monkeypatch):
    """validate() with scripted per-step times: the harness's blocks and the independent loop's."""
    def install(device, harness_step_s, independent_step_s, latency_s=0.010):
        seen = {"emptied": 0}

        def prepare(spec):
            seen["spec"] = spec
            return types.SimpleNamespace(step=lambda: None, run=lambda: None)
        monkeypatch.setitem(validate.CONFIGS, device, [("unet3d", (1, 16, 16, 16), 1, "inference")])
        monkeypatch.setattr(validate, "prepare", prepare)
        monkeypatch.setattr(validate, "warm_up", lambda step, warmup, dev: seen.setdefault("warm", (warmup, dev)))
        monkeypatch.setattr(validate, "time_step", lambda step, warmup, rounds: (latency_s,) * rounds)
        monkeypatch.setattr(validate, "time_blocks", lambda r, steps, blocks, dev: (steps * harness_step_s,) * blocks)
        monkeypatch.setattr(validate, "independent_loop",
                            lambda spec: (lambda: None, lambda steps: steps * independent_step_s))
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: seen.__setitem__("emptied", seen["emptied"] + 1))
        return seen
    return install


@pytest.mark.parametrize("device, harness_ms, within", [("cuda", 10.3, False), ("cuda", 9.7, False),
                                                        ("cuda", 10.15, True), ("cpu", 10.3, True),
                                                        ("cpu", 10.6, False)])
def test_validation_compares_per_step_times_against_the_device_target(fake_validation, device, harness_ms, within):
    seen = fake_validation(device, harness_ms / 1e3, 0.010)
    [row] = validate.validate(device, pairs=3, warmup=2)
    assert row["block_steps"] == 25  # 25 x 10 ms latency >= 0.25 s
    assert row["harness_step_ms"] == pytest.approx(harness_ms) and row["independent_step_ms"] == pytest.approx(10.0)
    assert row["ratio"] == pytest.approx(harness_ms / 10.0) and row["within_target"] is within
    assert row["latency_over_step"] == pytest.approx(10.0 / harness_ms)
    assert seen["spec"].device == device and seen["spec"].cudnn_benchmark is (device == "cuda")
    assert seen["warm"] == (2, device) and seen["emptied"] == (1 if device == "cuda" else 0)


@pytest.mark.parametrize("within, status", [((True, True), 0), ((True, False), 1), ((False, False), 1)])
def test_validation_exits_non_zero_when_any_configuration_is_outside_the_target(monkeypatch, tmp_path, within, status):
    rows = [{"config": f"c{i}", "ratio": 1.0 if ok else 1.1, "within_target": ok} for i, ok in enumerate(within)]
    monkeypatch.setattr(validate, "require_device", lambda device: None)
    monkeypatch.setattr(validate, "validate", lambda device, pairs, warmup: rows)
    monkeypatch.setattr(validate, "RESULTS_ROOT", tmp_path)
    monkeypatch.setattr(validate.environment, "capture", lambda device: {"device_name": "fake"})
    assert validate.main(["--device", "cuda", "--pairs", "2"]) == status
    written = json.loads((tmp_path / "validation-cuda.json").read_text())
    assert written["rows"] == rows and written["target"] == validate.TARGET["cuda"] == 0.02


def test_the_independent_cuda_loop_times_with_events_in_seconds_and_waits_for_the_end(monkeypatch):
    cuda = FakeCuda(monkeypatch, elapsed_ms=[40.0])
    calls = []

    class Model(torch.nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return x

        def to(self, device):
            calls.append(device)
            return self
    real_randn = torch.randn
    monkeypatch.setattr(validate, "create_model", lambda name: Model())
    monkeypatch.setattr(torch, "randn", lambda shape, device=None: real_randn(shape))
    spec = BenchSpec("unet3d", (1, 4, 4, 4), 2, "inference", device="cuda")
    one_step, timed_block = validate.independent_loop(spec)
    assert timed_block(4) == pytest.approx(0.040)
    assert calls == ["cuda"] + [(2, 1, 4, 4, 4)] * 4
    assert cuda.log == ["cuda.synchronize", "event0.record", "event1.record", "cuda.synchronize",
                        "event0.elapsed_time(event1)"]


# --- scripts/gpu_checks.sh ---------------------------------------------------------------------------------------

def run_gpu_checks(tmp_path, failing=()):
    """The script with a fake ``python`` on PATH that logs each call and fails those naming ``failing``."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    fake = bin_dir / "python"
    fake.write_text("#!/usr/bin/env bash\n"
                    'printf "%s\\n" "$*" >> "$CALLS_LOG"\n'
                    'for word in $FAILING; do [[ " $* " == *" $word "* ]] && exit 1; done\n'
                    "exit 0\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CALLS_LOG": str(log),
           "FAILING": " ".join(failing), "PLAN_OUT": str(tmp_path / "plan")}
    env.pop("MODELS", None)
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_checks.sh")], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    return done, log.read_text().splitlines()


def test_gpu_checks_run_every_stage_even_after_failures_then_exit_non_zero_naming_them(tmp_path):
    done, calls = run_gpu_checks(tmp_path, failing=("validate", "gpu-paper-best"))
    assert done.returncode == 1
    words = [" ".join(c.split()[1:3]) for c in calls]
    # validate, fp32 eager paper rows of unet3d then unet3d-resnet50, the best preset, the memory rows, the planner
    # beside them (through bash), the "harness --help" probe for repro, the volume profile, claims, the report
    assert words[:5] == ["harness validate", "harness bench", "harness bench", "harness bench", "harness bench"]
    assert "--models unet3d --run-id gpu-paper-fp32-eager-unet3d" in calls[1]
    assert "--models unet3d-resnet50 " in calls[2] and "--models unet3d* " in calls[3]  # the pattern, unexpanded
    assert any(c.startswith("-m harness plan --gpu h100") for c in calls)
    assert words[-2:] == ["harness claims", "harness report"]
    assert "2 of" in done.stderr and "validate (exit 1), paper-best (exit 1)" in done.stderr
    assert "failed: validate (exit 1)" in done.stdout


def test_gpu_checks_exit_zero_only_when_every_stage_passed(tmp_path):
    done, calls = run_gpu_checks(tmp_path)
    assert done.returncode == 0 and "stages passed" in done.stdout and "ran: validate paper-fp32-unet3d" in done.stdout


def _dry_run(tmp_path, budget, has="repro", extra=None):
    env = {**os.environ, "DRY_RUN": "1", "HARNESS_GPU_BUDGET_S": str(budget), "DRY_RUN_HAS": has, **(extra or {})}
    return subprocess.run(["bash", str(REPO / "scripts" / "gpu_checks.sh")], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)


def test_gpu_checks_dry_run_stages_in_value_order_within_the_budget(tmp_path):
    """DRY_RUN=1: the stage commands and the budget decisions, nothing run (a simulated clock)."""
    done = _dry_run(tmp_path, 900, has="repro nnunet")  # every stage's estimate, and the 30 s for claims and report
    assert done.returncode == 0, done.stderr
    order = [line.split()[3].rstrip(":") for line in done.stdout.splitlines() if line.startswith("== gpu_checks stage ")]
    assert order == ["validate", "paper-fp32-unet3d", "paper-fp32-unet3d-resnet50", "paper-best", "memory",
                     "memory-plan", "repro", "volume", "loader", "claims", "report"]
    assert "skipped: none" in done.stdout and "ran: validate" in done.stdout
    assert not (tmp_path / "results").exists()  # a dry run writes nothing


def test_gpu_checks_budget_guard_skips_what_does_not_fit_and_keeps_the_report(tmp_path):
    done = _dry_run(tmp_path, 300, has="")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ran: validate paper-fp32-unet3d paper-fp32-unet3d-resnet50 memory-plan claims report" in out
    assert "skipped: paper-best (needs ~120s" in out and "skipped: volume" in out
    assert "skipped: repro (python -m harness repro does not exist here)" in out


@pytest.mark.parametrize("has, loader", [("nnunet monai", "nnunet"), ("monai", "monai"), ("", None)])
def test_gpu_checks_loader_stage_feeds_training_by_the_pipeline_that_imports(tmp_path, has, loader):
    """The late stage (issue 28): loader-fed training rows beside the tensor-fed ones over a short sweep of workers,
    with nnU-Net's pipeline where nnunetv2 imports, else MONAI's, else skipped with the reason."""
    done = _dry_run(tmp_path, 900, has=f"repro {has}")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("== gpu_checks stage loader")]
    if loader is None:
        assert lines == ["== gpu_checks stage loader: SKIPPED, neither nnunetv2 nor monai imports here"]
        assert "skipped: loader (neither nnunetv2 nor monai imports here)" in done.stdout
        return
    (line,) = lines
    assert f"--loader {loader} --workers 0,4,12" in line and "--models unet3d-resnet50" in line
    assert "--profile peers --precision fp32" in line and f"--run-id gpu-loader-{loader}" in line
    short = _dry_run(tmp_path, 800, has=f"repro {has}")  # the volume stage leaves it too little: skipped, not cut
    assert "skipped: loader (needs ~90s" in short.stdout and "ran: " in short.stdout


def test_build_wheels_names_the_packages_the_gpu_machine_lacks():
    text = (REPO / "scripts" / "build_wheels.sh").read_text()
    for package in ("fvcore", "monai", "dynamic-network-architectures", "nox"):
        assert package in text
    assert "--no-index" in (REPO / "scripts" / "gpu_checks.sh").read_text()
