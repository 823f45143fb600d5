"""pytest glue for the benchmark suites: options, parametrization from the registry and a profile,
the run directory, resume, progress lines, and pytest-benchmark's machine-info hook.

A benchmark file sets ``FAMILIES`` and has a test taking the ``bench_spec`` argument.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from harness import environment
from harness.measure import WorkCache, find_max_batch, measure
from harness.measure.timing import time_step
from harness.options import (OptionError, require_cuda_for, require_device, require_models, require_new_run,
                             require_positive, require_run)
from harness.launch.shards import parse_shard, select
from harness.overrides import format_overrides, parse_overrides
from harness.registry import get_variant
from harness.profiles import PROFILES, best_options, default_profile, select_models, specs
from harness.user_models import register_entry_points, register_reference
from harness.store.schema import RUNS_ROOT, is_refusal as row_is_refusal
from harness.store.writer import RunStore, new_run_id


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
    group.addoption("--models", help="shell pattern over variant names, e.g. 'unet3d*' (default: the profile's "
                    "variants: the article's, with the peers profile also MONAI's and nnU-Net's)")
    group.addoption("--model", action="append", default=[], metavar="REF", help="your own model: "
                    "package.module:function or path/to/file.py:function returning an nn.Module (repeatable); "
                    "constructor arguments through --set")
    group.addoption("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="constructor argument for every measured variant, e.g. --set base_c=32")
    group.addoption("--precision", choices=("fp32", "bf16", "fp16"), help="only this precision")
    group.addoption("--channels-last", action="store_true", help="channels-last (3D) memory format")
    group.addoption("--exec-mode", choices=("eager", "compile", "cudagraphs", "best"),
                    help="eager (default); compile: torch.compile; cudagraphs: CUDA graphs through torch.compile "
                    "mode reduce-overhead (CUDA only); best: the fastest preset for the device (CUDA: cudagraphs, "
                    "bf16, channels-last)")
    group.addoption("--compile", action="store_true", help="the same as --exec-mode compile")
    group.addoption("--no-cudnn-benchmark", action="store_true", help="cudnn.benchmark off on CUDA")
    group.addoption("--rounds", type=int, help="latency samples (synchronized single steps) per configuration")
    group.addoption("--blocks", type=int, help="throughput samples (blocks of back-to-back steps) per configuration")
    group.addoption("--warmup", type=int, help="untimed warm-up steps per configuration (CUDA: at least; "
                    "warm-up goes on until the step time settles)")
    group.addoption("--threads", type=int, help="torch.set_num_threads (CPU)")
    group.addoption("--find-max-batch", action="store_true", help="also find the largest batch that fits (CUDA)")
    group.addoption("--run-id", help="name of the run directory under --runs-root (default: time-device-profile)")
    group.addoption("--resume", metavar="RUN_ID", help="continue a run: skip configurations it already has")
    group.addoption("--resume-mixed", action="store_true", help="resume even where the device, profile, "
                    "precision or machine differ from the run's first attempt (rows then are not comparable)")
    group.addoption("--shard", metavar="I/N", help="measure only shard I of N of the sweep (0 <= I < N): a "
                    "deterministic split by configuration key; python -m harness.launch runs every shard")
    group.addoption("--runs-root", help=f"where runs go (default {RUNS_ROOT}; a temporary folder when "
                    "benchmarks are disabled)")


def _device(config) -> str:
    return config.getoption("--device") or ("cuda" if torch.cuda.is_available() else "cpu")


def _profile(config) -> str:
    if config.getoption("--profile"):
        return config.getoption("--profile")
    return "smoke" if config.getoption("benchmark_disable") else default_profile(_device(config))


def _exec_mode(config) -> str:
    return config.getoption("--exec-mode") or ("compile" if config.getoption("--compile") else "eager")


def _user_models(config) -> tuple[str, ...]:
    """Register --model references (and entry-point models) once; their variant names."""
    if not hasattr(config, "_harness_user_models"):
        register_entry_points()
        config._harness_user_models = tuple(register_reference(r) for r in config.getoption("--model"))
    return config._harness_user_models


def selected_models(config) -> list[str]:
    return select_models(_profile(config), config.getoption("--models"), _user_models(config))


def bench_specs(config, families) -> list:
    options = dict(precision=config.getoption("--precision"), rounds=config.getoption("--rounds"),
                   warmup=config.getoption("--warmup"), blocks=config.getoption("--blocks"),
                   overrides=format_overrides(parse_overrides(config.getoption("--set"))) or None)
    if config.getoption("--channels-last"):
        options["channels_last"] = True
    exec_mode = _exec_mode(config)
    if exec_mode == "best":
        options.update(best_options(_device(config)))
    else:
        options["exec_mode"] = exec_mode
    if config.getoption("--no-cudnn-benchmark"):
        options["cudnn_benchmark"] = False
    found = specs(_profile(config), _device(config), selected_models(config), families, **options)
    return select(found, *parse_shard(config.getoption("--shard"))) if config.getoption("--shard") else found


def _runs_root(config) -> Path:
    return Path(config.getoption("--runs-root") or RUNS_ROOT)


def run_options(config) -> dict:
    """The options a run records in environment.json, and compares when it is resumed."""
    return {"device": _device(config), "profile": _profile(config), "models": config.getoption("--models"),
            "user_models": list(config.getoption("--model")), "set": list(config.getoption("--set")),
            "precision": config.getoption("--precision") or "profile", "rounds": config.getoption("--rounds"),
            "warmup": config.getoption("--warmup"), "blocks": config.getoption("--blocks"),
            "channels_last": config.getoption("--channels-last"), "exec_mode": _exec_mode(config),
            "cudnn_benchmark": _device(config) == "cuda" and not config.getoption("--no-cudnn-benchmark"),
            "threads": config.getoption("--threads") or torch.get_num_threads(), "shard": config.getoption("--shard")}


def check_options(config) -> None:
    """Refuse bad options before anything is built or written (pytest_configure runs before collection)."""
    device = config.getoption("--device")
    if device:
        require_device(device)
    if config.getoption("--models") is not None:
        require_models(config.getoption("--models"))
    overrides = parse_overrides(config.getoption("--set"))  # a malformed --set is refused here
    selected = selected_models(config)
    if not selected:
        raise OptionError(f"the {_profile(config)} profile selects no variant that can run here. Way out: "
                          f"--models PATTERN or --model module:function (`python -m harness list`).")
    for name in selected:  # every --set argument must be one each selected builder takes
        get_variant(name).constructor_args(**overrides)
    if config.getoption("--shard") is not None:
        parse_shard(config.getoption("--shard"))
    require_positive("--rounds", config.getoption("--rounds"))
    require_positive("--blocks", config.getoption("--blocks"))
    require_positive("--warmup", config.getoption("--warmup"), allow_zero=True)
    require_positive("--threads", config.getoption("--threads"))
    if _exec_mode(config) in ("cudagraphs", "best"):
        require_cuda_for(f"--exec-mode {_exec_mode(config)}", _device(config), "CUDA graphs capture GPU kernels")
    if config.getoption("--find-max-batch"):
        require_cuda_for("--find-max-batch", _device(config), "on the CPU running out of memory ends the "
                         "process instead of raising, so the largest batch cannot be searched for")
    if config.getoption("benchmark_disable"):
        return  # rows go to a temporary folder: no run under --runs-root is read or written
    root, resume, run_id = _runs_root(config), config.getoption("--resume"), config.getoption("--run-id")
    if resume and run_id and run_id != resume:
        raise OptionError(f"--run-id {run_id!r} and --resume {resume!r} name two runs. Way out: give only --resume.")
    if resume:
        store = RunStore(require_run(root, resume), create=False)
        if "merged_from" in store.first_record() or (store.run_dir / "launch.json").is_file():
            raise OptionError(f"--resume {resume!r} is a sweep's merged run, which no single process measures. Way "
                              f"out: python -m harness.launch --resume {resume} (or nox -s bench -- --launcher local "
                              f"--resume {resume}) reruns the shards that did not finish.")
        conflicts = store.resume_conflicts(environment.capture(_device(config)), run_options(config))
        if conflicts and not config.getoption("--resume-mixed"):
            raise OptionError(f"--resume {resume!r} would mix rows that are not comparable with the run's "
                              f"first attempt ({'; '.join(conflicts)}). Way out: resume with the same options "
                              f"on the same machine, start a new run, or add --resume-mixed to mix them anyway.")
    elif run_id:
        require_new_run(root, run_id)


def pytest_configure(config):
    try:
        check_options(config)
    except (OptionError, ValueError) as error:  # OptionError is a ValueError; so is a malformed --set
        pytest.exit(f"error: {error}", returncode=2)
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
        run_dir = _runs_root(config) / (resume or config.getoption("--run-id")
                                        or new_run_id(_device(config), _profile(config)))
        run_dir.mkdir(parents=True, exist_ok=True)
        config._harness_run_dir = run_dir
        if resume:
            torn, again = RunStore(run_dir).prepare_resume()
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if torn:
                reporter.write_line(
                    f"warning: {run_dir / 'results.csv'} ended in a torn record (the run was interrupted "
                    f"mid-write); dropped it, and its configuration is measured again: {torn[:80]!r}")
            if again:
                reporter.write_line(f"{len(again)} row(s) of {run_dir.name} were not valid measurements and are "
                                    f"measured again: {'; '.join(again[:5])}{' ...' if len(again) > 5 else ''}")
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


def pytest_sessionfinish(session):
    bench = getattr(session.config, "_harness_session", None)
    if bench is not None and bench.work_cache.peaks.measured():
        bench.store.note(peak_tflops=bench.work_cache.peaks.measured())


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    bench = getattr(config, "_harness_session", None)
    if bench is not None and bench.failed:
        terminalreporter.write_line(f"harness: {bench.failed} of {bench.started} configuration(s) failed to measure; "
                                    f"their error rows are in {bench.store.csv_path}", red=True)


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
        self.store.write_environment(self.env, **run_options(config), resumed=bool(resume))
        self.done = self.store.completed_keys() if resume else set()
        self.find_max_batch = config.getoption("--find-max-batch")
        self.work_cache = WorkCache()
        self.reporter = config.pluginmanager.get_plugin("terminalreporter")
        self.capture = config.pluginmanager.get_plugin("capturemanager")
        self.total = getattr(config, "_harness_total", 0)
        self.started = 0
        self.failed = 0  # configurations whose measurement failed (error rows that are not refusals)

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
    """Latency samples through pytest-benchmark (its JSON then holds the same rounds), each taken by the
    harness's own loop (``time_step``, one synchronized step); under --benchmark-disable pytest-benchmark
    calls it once, and that one call is the sample."""

    def timer(step, warmup, rounds):
        samples = []
        benchmark.pedantic(lambda: samples.extend(time_step(step, 0, 1)), rounds=rounds, warmup_rounds=warmup,
                           iterations=1)
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
        m = replace(m, max_batch=find_max_batch(spec))
    row = session.store.append(m, session.env)
    benchmark.extra_info.update({k: row[k] for k in ("model", "input_shape", "batch", "mode", "dtype", "exec_mode",
                                                      "warm", "step_ms", "samples_per_s", "peak_mem_mb", "gmacs",
                                                      "step_gflop", "mfu", "params_total", "params_used", "error")})
    if m.work:
        benchmark.extra_info["macs_by_operator"] = m.work.macs_by_operator
        benchmark.extra_info["uncalled_modules"] = list(m.work.uncalled_modules)
    if m.error and row_is_refusal(row):  # outside the envelope: the profile point does not apply to this variant
        session.progress(f"{position} {spec.label}: recorded as a refusal: {m.error}")
        pytest.skip(f"recorded as a refusal: {m.error}")
    if m.error:  # the row is written; the configuration failed, and so does its test (the sweep goes on)
        session.failed += 1
        session.progress(f"{position} {spec.label}: FAILED, recorded as an error row: {m.error}")
        pytest.fail(f"{spec.label}: {m.error}", pytrace=False)
    peak = "unavailable" if m.peak_mem_mb is None else f"{m.peak_mem_mb:.1f} MB"
    cold = "" if m.warm else (" (the warm-up never settled: not a measurement)" if m.warmup_steps
                              else " (no warm-up: not a measurement)")
    session.progress(f"{position} {spec.label}: latency {m.latency_ms:.1f} ms, throughput {m.step_ms:.1f} ms/step "
                     f"= {m.samples_per_s:.2f} samples/s, peak memory {peak}{cold}")
    assert m.output_shape[0] == spec.batch
    samples = m.latency_s + m.block_s
    assert all(t > 0 and math.isfinite(t) for t in samples) and len(m.latency_s) >= 1 and len(m.block_s) >= 1
    return m
