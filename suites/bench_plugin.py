"""pytest glue for the benchmark suites: options, parametrization from the registry and a profile,
the run directory, resume, progress lines, and pytest-benchmark's machine-info hook.

A benchmark file sets ``FAMILIES`` and has a test taking the ``bench_spec`` argument.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from harness import environment
from harness.measure import WorkCache, find_max_batch, measure
from harness.profiles import PROFILES, default_profile, specs
from harness.store import RUNS_ROOT, RunStore, new_run_id


def _refuse_broken_pytest_benchmark() -> None:
    """pytest-benchmark 5.2.3 and older fail at collection under pytest 9.2 and later: say so, and how to fix it."""
    from importlib.metadata import version

    from packaging.version import Version

    plugin, runner = version("pytest-benchmark"), version("pytest")
    if Version(plugin) < Version("5.3") and Version(runner) >= Version("9.2"):
        raise pytest.UsageError(
            f"pytest-benchmark {plugin} does not work with pytest {runner}: pytest-benchmark 5.2.3 and older fail "
            "at collection under pytest 9.2 and later (\"'Function' object has no attribute '_nodeid'\"). Install "
            "pytest-benchmark 5.3 or later (`python -m pip install 'pytest-benchmark>=5.3'`, which needs pytest>=8.1), "
            "or keep pytest below 9.2 (`python -m pip install 'pytest<9.2'`).")


_refuse_broken_pytest_benchmark()


def pytest_addoption(parser):
    group = parser.getgroup("harness", "benchmark harness")
    group.addoption("--profile", choices=sorted(PROFILES), help="sweep profile (default: paper on a GPU, "
                    "cpu otherwise; smoke under --benchmark-disable)")
    group.addoption("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    group.addoption("--models", default="*", help="shell pattern over variant names, e.g. 'unet3d*'")
    group.addoption("--precision", choices=("fp32", "bf16", "fp16"), help="only this precision")
    group.addoption("--channels-last", action="store_true", help="channels-last (3D) memory format")
    group.addoption("--compile", action="store_true", help="torch.compile the model")
    group.addoption("--no-cudnn-benchmark", action="store_true", help="cudnn.benchmark off on CUDA")
    group.addoption("--rounds", type=int, help="timed rounds per configuration")
    group.addoption("--warmup", type=int, help="untimed warm-up rounds per configuration")
    group.addoption("--threads", type=int, help="torch.set_num_threads (CPU)")
    group.addoption("--find-max-batch", action="store_true", help="also find the largest batch that fits (CUDA)")
    group.addoption("--run-id", help="name of the run directory under --runs-root (default: time-device-profile)")
    group.addoption("--resume", metavar="RUN_ID", help="continue a run: skip configurations it already has")
    group.addoption("--runs-root", help=f"where runs go (default {RUNS_ROOT}; a temporary folder when "
                    "benchmarks are disabled)")


def _device(config) -> str:
    return config.getoption("--device") or ("cuda" if torch.cuda.is_available() else "cpu")


def _profile(config) -> str:
    if config.getoption("--profile"):
        return config.getoption("--profile")
    return "smoke" if config.getoption("benchmark_disable") else default_profile(_device(config))


def bench_specs(config, families) -> list:
    options = dict(precision=config.getoption("--precision"), rounds=config.getoption("--rounds"),
                   warmup=config.getoption("--warmup"))
    if config.getoption("--channels-last"):
        options["channels_last"] = True
    if config.getoption("--compile"):
        options["compile"] = True
    if config.getoption("--no-cudnn-benchmark"):
        options["cudnn_benchmark"] = False
    return specs(_profile(config), _device(config), config.getoption("--models"), families, **options)


def pytest_configure(config):
    if config.getoption("--threads"):
        torch.set_num_threads(config.getoption("--threads"))
    config._harness_session = None


def pytest_generate_tests(metafunc):
    if "bench_spec" in metafunc.fixturenames:
        families = getattr(metafunc.module, "FAMILIES")
        found = bench_specs(metafunc.config, families)
        metafunc.parametrize("bench_spec", found, ids=[s.label for s in found])


def pytest_collection_modifyitems(session, config, items):
    config._harness_total = sum(1 for item in items if "bench_spec" in getattr(item, "fixturenames", ()))
    config._harness_run_dir = None
    if config._harness_total and not config.getoption("benchmark_disable"):
        resume = config.getoption("--resume")
        root = Path(config.getoption("--runs-root") or RUNS_ROOT)
        run_dir = root / (resume or config.getoption("--run-id") or new_run_id(_device(config), _profile(config)))
        run_dir.mkdir(parents=True, exist_ok=True)
        config._harness_run_dir = run_dir
        benchmark_session = getattr(config, "_benchmarksession", None)
        if benchmark_session is not None and not benchmark_session.json:
            # pytest-benchmark's raw JSON goes beside results.csv; a resumed run adds benchmark.2.json...
            attempt = 1 + sum(1 for _ in run_dir.glob("benchmark*.json"))
            benchmark_session.json = BenchmarkJsonPath(
                run_dir / ("benchmark.json" if attempt == 1 else f"benchmark.{attempt}.json"))


class BenchmarkJsonPath(os.PathLike):
    """Where pytest-benchmark writes its JSON, in the form every version accepts.

    pytest-benchmark up to 5.2.3 parses ``--benchmark-json`` with ``argparse.FileType('wb')`` and
    writes through ``with session.json as fh``; 5.3 and later take a path and call ``open(session.json,
    'wb')``. This is both: a path, and a context manager that opens the file only when the JSON is
    written (so a run that measures nothing leaves no empty file).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle = None

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __enter__(self):
        self._handle = self.path.open("wb")
        return self._handle

    def __exit__(self, *exc_info) -> None:
        self._handle.close()
        self._handle = None


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["harness_environment"] = environment.capture(_device(config))


class BenchSession:
    """One run directory shared by every benchmark of the pytest session."""

    def __init__(self, config, tmp_root: Path):
        resume = config.getoption("--resume")
        # With benchmarks disabled (the tests session) rows go to a temporary folder, not results/.
        run_dir = config._harness_run_dir or tmp_root / new_run_id(_device(config), _profile(config))
        self.store = RunStore(run_dir)
        self.env = environment.capture(_device(config))
        self.store.write_environment(self.env, profile=_profile(config), models=config.getoption("--models"),
                                     resumed=bool(resume))
        self.done = self.store.completed_keys() if resume else set()
        self.find_max_batch = config.getoption("--find-max-batch")
        self.work_cache = WorkCache()
        self.reporter = config.pluginmanager.get_plugin("terminalreporter")
        self.capture = config.pluginmanager.get_plugin("capturemanager")
        self.total = getattr(config, "_harness_total", 0)
        self.started = 0

    def progress(self, text: str) -> None:
        """A line on the terminal now: pytest captures output during a test, so lift that briefly."""
        if self.reporter is None:
            return
        if self.capture is None:
            self.reporter.write_line(text)
            return
        with self.capture.global_and_fixture_disabled():
            self.reporter.write_line(text)


@pytest.fixture(scope="session")
def bench_session(request, tmp_path_factory):
    config = request.config
    if config._harness_session is None:
        config._harness_session = BenchSession(config, tmp_path_factory.mktemp("runs"))
    return config._harness_session


def pedantic_timer(benchmark):
    """Time with pytest-benchmark (its JSON then holds the same rounds) while keeping the raw samples;
    under --benchmark-disable it calls the step once, and that one call is the sample."""
    import time

    def timer(step, warmup, rounds):
        samples = []

        def timed():
            start = time.perf_counter()
            result = step()
            samples.append(time.perf_counter() - start)
            return result

        benchmark.pedantic(timed, rounds=rounds, warmup_rounds=warmup, iterations=1)
        return tuple(samples[-rounds:])

    return timer


def run_benchmark(spec, benchmark, session: BenchSession):
    """Measure one configuration, record its row, and check the output after the timed call."""
    session.started += 1
    position = f"[{session.started}/{session.total}]"
    if spec.key in session.done:
        pytest.skip(f"already in run {session.store.run_id} (resumed)")
    session.progress(f"{position} {spec.label} ...")
    m = measure(spec, pedantic_timer(benchmark), session.work_cache)
    if session.find_max_batch and not m.error:
        m = type(m)(**{**m.__dict__, "max_batch": find_max_batch(spec)})
    row = session.store.append(m, session.env)
    benchmark.extra_info.update({k: row[k] for k in ("model", "input_shape", "batch", "mode", "dtype",
                                                      "peak_mem_mb", "gmacs", "params_total", "params_used",
                                                      "error")})
    if m.work:
        benchmark.extra_info["macs_by_operator"] = m.work.macs_by_operator
        benchmark.extra_info["uncalled_modules"] = list(m.work.uncalled_modules)
    if m.error:
        session.progress(f"{position} {spec.label}: recorded as an error row: {m.error}")
        pytest.skip(f"recorded as an error row: {m.error}")
    peak = "unavailable" if m.peak_mem_mb is None else f"{m.peak_mem_mb:.1f} MB"
    session.progress(f"{position} {spec.label}: median {m.median_ms:.1f} ms, {m.samples_per_s:.2f} samples/s, "
                     f"peak memory {peak}")
    assert m.output_shape[0] == spec.batch
    assert m.extra["output_finite"], "the output holds NaN or inf"
    assert all(t > 0 and math.isfinite(t) for t in m.times_s) and len(m.times_s) >= 1
    return m
