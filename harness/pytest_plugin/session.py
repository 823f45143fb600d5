"""The one object a pytest session keeps: its options, the configurations it measures (resolved once),
the run folder and its store, what a resumed run already has, progress lines and failure counts.
The hooks in ``plugin`` hand their work here; nothing is kept on pytest's ``config`` but this object."""
from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import pytest

from harness.bench import environment
from harness.bench.profiles import PROFILES, select_models, specs
from harness.bench.run import WorkCache, measure
from harness.bench.loader import fed_specs
from harness.bench.spec import NO_LOADER, VOLUME_MODE, BenchSpec, Measurement
from harness.bench.timing import time_step
from harness.bench.volume import VolumeOptions, parse_volume_options, require_window, search_sw_batch, volume_model
from harness.catalog.registry import get_variant, require_models
from harness.catalog.user import register_entry_points, register_reference
from harness.launch.plan import PLANNED_KEYS_ENV
from harness.launch.shards import parse_shard, select
from harness.options import (OptionError, require_cuda_for, require_device, require_new_run,
                             require_positive, require_run)
from harness.overrides import format_overrides, parse_overrides
from harness.pytest_plugin.options import RunOptions, check_runs_root
from harness.store.run_store import RunStore, new_run_id, to_row
from harness.store.csvfile import read_rows
from harness.store.schema import is_refusal


class HarnessSession:
    def __init__(self, config, options: RunOptions):
        self.config = config
        self.options = options
        self.run_dir: Path | None = None  # set at collection when rows go under --runs-root
        self.total = 0
        self.started = 0
        # Every configuration is accounted for at the end (GUIDE convention 17; the closing summary counts them):
        self.measured = 0  # rows measured fine (warm-up included, when one was asked for)
        self.failed = 0  # configurations whose measurement failed (error rows that are not refusals)
        self.refused = 0  # outside the envelope: refusal rows
        self.unsettled = 0  # rows whose warm-up never settled: written, but not a measurement, and a failed test
        self.resumed = 0  # already in the resumed run: not measured again
        self.busy_s = 0.0  # seconds spent measuring configurations so far (for the time left)
        self.work_cache = WorkCache()
        self.run_store: RunStore | None = None  # made on first use (store())

    # --- what is measured, worked out once ---------------------------------------------------------------

    @cached_property
    def user_models(self) -> tuple[str, ...]:
        """--model references (and entry-point models), registered once; their variant names."""
        register_entry_points()
        return tuple(register_reference(reference) for reference in self.options.user_models)

    @cached_property
    def models(self) -> list[str]:
        return select_models(self.options.profile, self.options.models, self.user_models)

    @cached_property
    def sweep(self) -> list[BenchSpec]:
        """Every configuration of the sweep (all shards)."""
        overrides = format_overrides(parse_overrides(list(self.options.overrides))) or None
        found = specs(self.options.profile, self.options.device, self.models, overrides=overrides,
                      volume=self.volume_request, **self.options.spec_options)
        if self.loader != NO_LOADER:  # each 3D training configuration, then its loader-fed twins
            found = fed_specs(found, self.loader, self.options.loader_workers)
        return found

    @cached_property
    def specs(self) -> list[BenchSpec]:
        """The configurations this process measures: the sweep, or its --shard."""
        found = self.sweep
        return select(found, *parse_shard(self.options.shard)) if self.options.shard else found

    @property
    def loader(self) -> str:
        return self.options.loader or NO_LOADER

    def check_loader(self) -> None:
        """--loader names a pipeline that loads here, --workers comes with it, and the sweep has a 3D training
        configuration for it to feed (an inference-only or whole-volume sweep has none)."""
        options = self.options
        if options.workers is not None and self.loader == NO_LOADER:
            raise OptionError("--workers sets the DataLoader workers of loader-fed training rows, and no --loader is "
                              "given (or --loader none). Way out: add --loader nnunet (or monai, or your "
                              "module:function), or leave --workers out.")
        if self.loader == NO_LOADER:
            return
        from harness.pipeline.pipelines import BUILTIN, available, user

        if ":" in self.loader:
            user(self.loader, "--loader")  # an OptionError naming what does not load
        elif self.loader not in BUILTIN:
            raise OptionError(f"--loader {self.loader!r} is not one of {', '.join(BUILTIN)}, none, or a pipeline of "
                              f"your own (module:function or file.py:function). Way out: e.g. --loader nnunet.")
        elif available(self.loader):
            raise OptionError(f"--loader {available(self.loader)}, or choose another --loader.")
        if options.bench and not any(spec.loader != NO_LOADER for spec in self.sweep):
            raise OptionError(f"--loader feeds training steps of 3D networks, and this sweep (profile "
                              f"{options.profile}, {len(self.sweep)} configuration(s)) has none: it measures inference, "
                              f"whole volumes or 2D networks only. Way out: a profile that trains (e.g. --profile cpu "
                              f"or --profile peers) with a 3D variant (--models 'unet3d*'), or leave --loader out.")

    @cached_property
    def volume_request(self) -> VolumeOptions:
        """The whole-volume options, parsed (an OptionError for a bad one)."""
        o = self.options
        return parse_volume_options(o.volumes, o.roi, o.overlap, o.blend, o.mirror, o.sw_batch, o.preset)

    def check_volume(self, overrides: dict) -> None:
        """Whole-volume options: well-formed, applying to some volume, and a window every such model runs."""
        options, request = self.options, self.volume_request
        plan = PROFILES[options.profile].volume_plan(options.device)
        if request.given and not request.volumes and plan is None:
            raise OptionError(f"{', '.join(request.given)} set(s) how whole volumes are cut into windows, but the "
                              f"{options.profile} profile measures no whole volume. Way out: add --volume DxHxW (e.g. "
                              f"--volume 48x80x72), or use --profile volume.")
        if not options.bench or not (request.volumes or request.given):
            return
        eligible = [name for name in self.models if volume_model(get_variant(name))]
        if request.volumes and not eligible:
            raise OptionError(f"--volume needs a 3D segmentation network, and none of the selected variants "
                              f"({', '.join(self.models)}) is one. Way out: --models 'unet3d*' (or a peer such as "
                              f"monai-basicunet), or --model with your 3D network.")
        roi = request.window(0)[0]
        if 0 in roi:  # no --roi and no preset window: the profile's patch, per model (a refusal row if it cannot run)
            return
        for name in eligible:
            for precision in (options.precision,) if options.precision else PROFILES[options.profile].precisions:
                require_window(name, roi, overrides, options.device, precision, request.sw_batch or 1)

    def check(self) -> None:
        """Refuse bad options before anything is built or written (pytest_configure runs before collection)."""
        options = self.options
        require_device(options.device)
        self.volume_request  # noqa: B018 -- a malformed whole-volume option is refused here
        if options.models is not None:
            require_models(options.models)
        overrides = parse_overrides(list(options.overrides))  # a malformed --set is refused here
        if options.bench and not self.models:
            raise OptionError(f"the {options.profile} profile selects no variant that can run here. Way out: "
                              f"--models PATTERN or --model module:function (`python -m harness list`).")
        for name in self.models if options.bench else ():  # every --set argument must be one each builder takes
            get_variant(name).constructor_args(**overrides)
        self.check_volume(overrides)
        self.check_loader()
        if options.shard is not None:
            parse_shard(options.shard)
        require_positive("--rounds", options.rounds)
        require_positive("--blocks", options.blocks)
        require_positive("--warmup", options.warmup, allow_zero=True)
        require_positive("--threads", options.threads)
        if options.exec_mode in ("cudagraphs", "best"):
            require_cuda_for(f"--exec-mode {options.exec_mode}", options.device, "CUDA graphs capture GPU kernels")
        if options.find_max_batch:
            require_cuda_for("--find-max-batch", options.device, "on the CPU running out of memory ends the "
                             "process instead of raising, so the largest batch cannot be searched for")
        if options.benchmarks_disabled:
            return  # rows go to a temporary folder: no run under --runs-root is read or written
        root, resume, run_id = options.runs_root, options.resume, options.run_id
        check_runs_root(root)
        if resume and run_id and run_id != resume:
            raise OptionError(f"--run-id {run_id!r} and --resume {resume!r} name two runs. Way out: give only --resume.")
        if resume:
            store = RunStore(require_run(root, resume), create=False)
            if "merged_from" in store.first_record() or (store.run_dir / "launch.json").is_file():
                raise OptionError(f"--resume {resume!r} is a sweep's merged run, which no single process measures. "
                                  f"Way out: python -m harness.launch --resume {resume} (or nox -s bench -- --launcher "
                                  f"local --resume {resume}) reruns the shards that did not finish.")
            conflicts = store.resume_conflicts(environment.capture(options.device), self.recorded_options())
            if conflicts and not options.resume_mixed:
                raise OptionError(f"--resume {resume!r} would mix rows that are not comparable with the run's "
                                  f"first attempt ({'; '.join(conflicts)}). Way out: resume with the same options "
                                  f"on the same machine, start a new run, or add --resume-mixed to mix them anyway.")
        elif run_id:
            require_new_run(root, run_id)

    def recorded_options(self) -> dict:
        import torch

        return self.options.recorded(torch.get_num_threads())

    # --- the run folder ---------------------------------------------------------------------------------

    def open_run(self, write_line) -> Path:
        """The run folder under --runs-root (a resumed run made ready to append to)."""
        options = self.options
        self.run_dir = options.runs_root / (options.resume or options.run_id
                                            or new_run_id(options.device, options.profile))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if options.resume:
            torn, again = RunStore(self.run_dir).prepare_resume()
            if torn:
                write_line(f"warning: {self.run_dir / 'results.csv'} ended in a torn record (the run was "
                           f"interrupted mid-write); dropped it, and its configuration is measured again: {torn[:80]!r}")
            if again:
                write_line(f"{len(again)} row(s) of {self.run_dir.name} were not valid measurements and are measured "
                           f"again: {'; '.join(again[:5])}{' ...' if len(again) > 5 else ''}")
        return self.run_dir

    def store(self, tmp_root: Path) -> RunStore:
        """The run's store, made on first use (with benchmarks disabled, in a temporary folder)."""
        if self.run_store is None:
            options = self.options
            self.run_store = RunStore(self.run_dir or tmp_root / new_run_id(options.device, options.profile))
            self.env = environment.capture(options.device)
            self.run_store.write_environment(self.env, **self.recorded_options(), resumed=bool(options.resume))
            self.done = self.run_store.completed_keys() if options.resume else set()
        return self.run_store

    # --- one configuration ------------------------------------------------------------------------------

    def progress(self, text: str) -> None:
        """A line on the terminal now: pytest captures output during a test, so lift that briefly."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        writer = getattr(reporter, "_tw", None)
        if getattr(writer, "width_of_current_line", 0):  # after -q's progress dots: a line of its own
            text = "\n" + text
        if capture is None:
            reporter.write_line(text)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(text)

    def measure(self, spec: BenchSpec, benchmark) -> Measurement:
        """Measure one configuration, record its row, then pass, skip (a refusal) or fail (a failed measurement)."""
        self.started += 1
        position = f"[{self.started}/{self.total}]"
        store = self.run_store
        search = spec.mode == VOLUME_MODE and spec.sw_batch_size == 0  # --sw-batch auto
        if planned_key(spec) in self.done:
            self.resumed += 1
            pytest.skip(f"already in run {store.run_id} (resumed)")
        self.progress(f"{position} {spec.label} ...{self.time_left()}")
        benchmark.group = get_variant(spec.model).family
        began = time.perf_counter()
        try:
            if spec.device == "cuda":  # CUDA rows carry the memory room's prediction (harness.bench.predictors)
                import harness.memory  # noqa: F401  (registers it)
            if spec.loader != NO_LOADER:  # the bench reaches the pipelines of harness.pipeline through its hook
                import harness.pipeline  # noqa: F401  (registers the pipelines with harness.bench.loader)
            if search:
                return self.measure_search(spec, benchmark, position)
            m = measure(spec, pedantic_timer(benchmark), self.work_cache,
                        find_max=self.options.find_max_batch and spec.mode != VOLUME_MODE)
            return self.record(spec, m, benchmark, position)
        finally:
            self.busy_s += time.perf_counter() - began

    def time_left(self) -> str:
        """`` (about 1m20s left)``: the mean time of the configurations measured so far in this session times
        the configurations still to come, this one included; empty before the first has finished."""
        done = self.started - 1 - self.resumed
        if done < 1 or not self.total:
            return ""
        return f" (about {_duration(self.busy_s / done * (self.total - self.started + 1))} left)"

    def measure_search(self, spec: BenchSpec, benchmark, position: str) -> Measurement:
        """--sw-batch auto: every tried sw_batch_size is a row; the test passes or fails with the chosen one.
        (pytest-benchmark's fixture times once per test, so the search's samples come from the harness's own
        loop and its JSON holds none of them.) A failure that ends the search (out of memory) is a row too."""
        tried = search_sw_batch(spec, time_step, self.work_cache, measured=lambda m: self.progress(
            f"{position} {m.spec.label}: " + (m.error or f"{m.volume_s:.3f} s/volume, {m.volumes_per_s:.3f} volumes/s")))
        for m in tried:
            self.run_store.append(m, self.env)
        chosen = next((m for m in tried if m.sw_batch_best), tried[0])
        if tried[-1].error and tried[-1] is not chosen:
            self.progress(f"{position} {tried[-1].spec.label}: the search stopped here: {tried[-1].error}")
        self.progress(f"{position} {spec.label}: chose sw_batch_size {chosen.spec.sw_batch_size} of "
                      f"{', '.join(str(m.spec.sw_batch_size) for m in tried)}")
        return self.record(chosen.spec, chosen, benchmark, position, stored=True)

    def record(self, spec: BenchSpec, m: Measurement, benchmark, position: str, stored: bool = False) -> Measurement:
        """Write the row (unless already written), then pass, skip (a refusal) or fail (a failed measurement)."""
        store = self.run_store
        row = to_row(m, self.env, store.run_id) if stored else store.append(m, self.env)
        benchmark.extra_info.update({k: row[k] for k in ("model", "input_shape", "batch", "mode", "dtype", "exec_mode",
                                                          "warm", "step_ms", "samples_per_s", "peak_mem_mb", "gmacs",
                                                          "step_gflop", "mfu", "params_total", "params_used", "error")})
        if spec.loader != NO_LOADER:
            benchmark.extra_info.update(loader=spec.loader, workers=spec.workers, data_wait=m.data_wait)
        if m.work:
            benchmark.extra_info["macs_by_operator"] = m.work.macs_by_operator
            benchmark.extra_info["uncalled_modules"] = list(m.work.uncalled_modules)
        if m.error and is_refusal(row):  # outside the envelope: the profile point does not apply to this variant
            self.refused += 1
            self.progress(f"{position} {spec.label}: recorded as a refusal: {m.error}")
            pytest.skip(f"recorded as a refusal: {m.error}")
        if m.error:  # the row is written; the configuration failed, and so does its test (the sweep goes on)
            self.failed += 1
            self.progress(f"{position} {spec.label}: FAILED, recorded as an error row: {m.error}")
            pytest.fail(f"{spec.label}: {m.error}", pytrace=False)
        peak = "unavailable" if m.peak_mem_mb is None else f"{m.peak_mem_mb:.1f} MB"
        unsettled = m.warmup_steps >= 1 and not m.warmup_settled
        cold = "" if m.warm else (" (the warm-up never settled: not a measurement)" if unsettled
                                  else " (no warm-up: not a measurement)")
        largest = "" if m.max_batch is None and m.predicted_max_batch is None else (
            f", largest batch {m.max_batch if m.max_batch is not None else 'none'} measured, "
            f"{m.predicted_max_batch if m.predicted_max_batch is not None else 'none'} predicted")
        if spec.mode == VOLUME_MODE:
            self.progress(f"{position} {spec.label}: {m.windows} windows ({m.forward_passes} forward passes), "
                          f"{m.volume_s:.3f} s/volume, {m.volumes_per_s:.3f} volumes/s, {m.mvox_per_s:.3f} Mvox/s, "
                          f"stitch fraction {stitch_text(m)}, peak memory {peak}{cold}")
        else:
            fed = "" if spec.loader == NO_LOADER else f", waiting for data {wait_text(m)} of the step"
            self.progress(f"{position} {spec.label}: latency {m.latency_ms:.1f} ms, throughput {m.step_ms:.1f} ms/step "
                          f"= {m.samples_per_s:.2f} samples/s{fed}, peak memory {peak}{largest}{cold}")
        if unsettled:  # written (resume measures it again), counted, and failed: it must not pass silently
            self.unsettled += 1
            pytest.fail(f"{spec.label}: the warm-up never settled ({m.warmup_steps} steps), so its samples are not a "
                        f"steady-state measurement; the row is kept with warm=False and --resume measures it again",
                        pytrace=False)
        self.measured += 1
        return m

    def nothing_measured(self) -> bool:
        """Configurations were attempted, none failed or stayed unsettled, and the run holds no measured row:
        everything was refused (or the run holds refusals only). Nothing to judge (pytest exit status 5)."""
        if not self.started or self.measured or self.failed or self.unsettled:
            return False
        if self.run_store is None or not self.run_store.csv_path.is_file():
            return True
        return not any(not row.get("error") for row in read_rows(self.run_store.csv_path).rows)

    def write_planned_keys(self, items) -> bool:
        """The launcher's plan (``HARNESS_PLANNED_KEYS``: a file to write; harness.launch.plan): every collected
        configuration as [its key, the key its row carries] (they differ for a --sw-batch auto search, whose
        first row is sw_batch_size 1), JSON. True when asked for: the session then opens no run."""
        path = os.environ.get(PLANNED_KEYS_ENV)
        if not path:
            return False
        found = [item.callspec.params["bench_spec"] for item in items
                 if "bench_spec" in getattr(getattr(item, "callspec", None), "params", {})]
        Path(path).write_text(json.dumps([[list(spec.key), list(planned_key(spec))] for spec in found]) + "\n")
        return True


def planned_key(spec: BenchSpec) -> tuple:
    """The key a configuration's row carries: a --sw-batch auto search writes its rows together when it ends,
    the first (sw_batch_size 1) always among them."""
    search = spec.mode == VOLUME_MODE and spec.sw_batch_size == 0
    return (replace(spec, sw_batch_size=1) if search else spec).key


def stitch_text(m: Measurement) -> str:
    """``0.123 [0.101, 0.145]``, or ``0.012 [-0.010, 0.034] unresolved`` where the interval spans 0."""
    if m.stitch_fraction is None:
        return "unavailable"
    interval = m.stitch_interval
    if interval is None:
        return f"{m.stitch_fraction:.3f} (one block: no interval)"
    return (f"{m.stitch_fraction:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
            + ("" if m.stitch_resolved else " unresolved (the interval spans 0)"))


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


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


def wait_text(m: Measurement) -> str:
    """``0.42 [0.38, 0.46]``: the share of a loader-fed step spent waiting for data, with its 95% interval."""
    if m.data_wait is None:
        return "unavailable"
    interval = m.data_wait_interval
    return f"{m.data_wait:.2f}" + ("" if interval is None else f" [{interval[0]:.2f}, {interval[1]:.2f}]")
