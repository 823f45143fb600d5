"""The plan's search: for each variant, mode and precision, the largest batch at a patch and the largest patch at a
batch under a budget (a vectorized estimate from a ``ScaledTrace``, confirmed by the allocator replay), and one
fixed configuration's prediction; each answer with its domain label (harness.memory.workspace.domain)."""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.options import OptionError
from harness.planner import cache as disk
from harness.planner.nnunet import _nnunet
from harness.planner.units import MAX_BATCH, MAX_PATCH, MIB, _shape, _spatial


@dataclass(frozen=True)
class Fit:
    """One answer: a configuration, its predicted peak and floor (MiB) and what is left of the budget."""

    batch: int
    patch: tuple[int, ...]
    predicted_peak_mb: float
    predicted_floor_mb: float
    left_mb: float


@dataclass
class PlanRow:
    model: str
    mode: str
    precision: str
    channels_last: bool
    largest_batch: Fit | None = None  # at the given patch
    largest_patch: Fit | None = None  # at the given batch
    nnunet: dict | None = None
    note: str = ""
    domain: str = ""  # the workspace model's domain label at the largest patch (harness.memory.workspace)


@dataclass
class Plan:
    budget_bytes: int
    limit_bytes: int  # budget less the margin: what a plan may use
    margin: float
    budget_text: str
    patch: tuple[int, ...] | None
    batch: int
    volume: tuple[int, ...] | None
    rows: list[PlanRow] = field(default_factory=list)
    gpu: str | None = None  # the named card (--gpu), for the domain label


class _Model:
    """A variant as the planner sees it: its envelope, its patch step, its traces."""

    def __init__(self, name: str, overrides: dict, overrides_text: str, step: int):
        from harness.catalog.registry import get_variant

        self.name, self.overrides, self.overrides_text = name, overrides, overrides_text
        self.variant = get_variant(name)
        self.dims = self.variant.spatial_dims
        args = self.variant.constructor_args(**overrides)
        argument = self.variant.record.channels_argument
        self.channels = args.get(argument) if argument and isinstance(args.get(argument), int) else \
            self.variant.example_input[1]
        self.step = step

    def verdict(self, batch: int, patch, mode: str, precision: str):
        from harness.envelope import check

        return check(self.variant, (batch, self.channels, *patch), self.overrides, mode, "cuda", precision,
                     suggest=False)

    def accepts(self, batch: int, patch, mode: str, precision: str) -> bool:
        return self.verdict(batch, patch, mode, precision).supported

    def smallest_batch(self, patch, mode, precision) -> int | None:
        return next((b for b in (1, 2) if self.accepts(b, patch, mode, precision)), None)


def _scaled(model: _Model, mode: str, precision: str, channels_last: bool, cache: bool):
    """The model's ScaledTrace for a mode and precision: simulated at two small sizes (batch 1 and 2 where the
    step is the same at both, else 2 and 4), or read from the disk cache."""
    from harness.planner import scaled as mm

    cubes = [s for s in range(max(32, model.step), 16 * model.step + 1, model.step)
             if model.accepts(2, (s,) * model.dims, mode, precision)][:2]
    if len(cubes) < 2:
        raise ValueError(f"no two patch sizes from {max(32, model.step)} up in steps of {model.step} that "
                         f"{model.name} accepts ({mode}, {precision})")
    key = (model.name, model.overrides_text, model.channels, mode, precision, channels_last, tuple(cubes))
    path = disk.path_for(model, key)
    if cache:
        found = disk.load(path)
        if found is not None:
            return found
    failure = None
    for batches in ((1, 2), (2, 4)):
        first, second = (batches[0], (cubes[0],) * model.dims), (batches[1], (cubes[1],) * model.dims)
        if not model.accepts(first[0], first[1], mode, precision):
            continue
        try:
            scaled = mm.scaled_trace(model.name, model.overrides_text, model.channels, mode, precision,
                                     channels_last, first, second)
            break
        except ValueError as error:  # the step differs between the two (e.g. batch 1 elides a reduction)
            failure = error
    else:
        raise ValueError(f"{model.name}: its step does not scale between two small sizes ({failure})")
    if cache:
        disk.store(path, scaled)
    return scaled


def _exact(scaled, batch: int, patch):
    from harness.memory.predict import prediction

    return prediction(scaled.at(batch, patch))


def _fit_answer(scaled, batch, patch, budget: int) -> Fit:
    done = _exact(scaled, batch, patch)
    return Fit(batch, tuple(patch), round(done.peak_mb, 1), round(done.floor_mb, 1),
               round(budget / MIB - done.peak_mb, 1))


def _largest_batch(model: _Model, scaled, patch, mode, precision, plan: Plan) -> tuple[Fit | None, str]:
    smallest = model.smallest_batch(patch, mode, precision)
    if smallest is None:
        return None, model.verdict(2, patch, mode, precision).message()
    limit_mb = plan.limit_bytes / MIB
    fits = lambda b: scaled.estimate(b, patch) <= limit_mb  # noqa: E731
    if not fits(smallest):
        return None, f"batch {smallest} already needs {_exact(scaled, smallest, patch).peak_mb:.0f} MiB"
    low, high = smallest, smallest * 2
    while high <= MAX_BATCH and fits(high):
        low, high = high, high * 2
    high = min(high, MAX_BATCH + 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    batch = low
    while batch >= smallest and _exact(scaled, batch, patch).peak_mb > limit_mb:  # the replay adds a little
        batch -= 1
    if batch < smallest:
        return None, f"batch {smallest} already needs {_exact(scaled, smallest, patch).peak_mb:.0f} MiB"
    return _fit_answer(scaled, batch, patch, plan.budget_bytes), ""


def _largest_patch(model: _Model, scaled, batch, mode, precision, plan: Plan) -> tuple[Fit | None, str]:
    limit_mb = plan.limit_bytes / MIB
    step = model.step
    if plan.volume is None:
        sizes = list(range(step, MAX_PATCH + 1, step))
        fits = [scaled.estimate(batch, (s,) * model.dims) <= limit_mb for s in sizes]
        candidates = [s for s, ok in zip(sizes, fits) if ok]
        for s in reversed(candidates):
            patch = (s,) * model.dims
            if model.accepts(batch, patch, mode, precision) and _exact(scaled, batch, patch).peak_mb <= limit_mb:
                return _fit_answer(scaled, batch, patch, plan.budget_bytes), ""
        return None, f"no patch from {step} up in steps of {step} fits at batch {batch}"
    # Anisotropic: from the smallest accepted cube, grow the axis with the most room left in the volume, relative
    # to the volume's size on that axis (so the patch takes the volume's proportions while it can).
    start = next((s for s in range(step, MAX_PATCH + 1, step)
                  if model.accepts(batch, (s,) * model.dims, mode, precision)), None)
    if start is None or scaled.estimate(batch, (start,) * model.dims) > limit_mb:
        return None, f"no patch from {step} up in steps of {step} fits at batch {batch}"
    caps = [step * (v // step) for v in plan.volume]  # never a patch larger than the volume on any axis
    if start > min(caps):
        return None, (f"the smallest patch {model.name} accepts ({_shape((start,) * model.dims)}) is larger than the "
                      f"volume {_shape(plan.volume)}")
    patch = [start] * model.dims
    while True:
        grown = False
        for axis in sorted(range(model.dims), key=lambda a: (patch[a] / caps[a], a)):
            if patch[axis] + step > caps[axis]:
                continue
            trial = list(patch)
            trial[axis] += step
            if scaled.estimate(batch, trial) <= limit_mb and model.accepts(batch, trial, mode, precision):
                patch, grown = trial, True
                break
        if not grown:
            break
    while _exact(scaled, batch, patch).peak_mb > limit_mb:  # shrink the largest axis until the replay agrees
        axis = max(range(model.dims), key=lambda a: patch[a])
        if patch[axis] - step < start:
            return None, f"no patch fits at batch {batch}"
        patch[axis] -= step
    return _fit_answer(scaled, batch, tuple(patch), plan.budget_bytes), ""

def _simulate_ahead(models: list[str], overrides: dict, overrides_text: str, modes, precisions, channels_last: bool,
                    step: int, jobs: int) -> None:
    """Fill the disk cache with the traces the plan will need, ``jobs`` processes at a time (forked: each
    simulation is a pure-Python run on fake tensors, so processes, not threads, run them side by side)."""
    import concurrent.futures
    import multiprocessing

    work = [(name, mode, precision) for name in models for mode in modes for precision in precisions]
    if jobs <= 1 or len(work) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return
    with concurrent.futures.ProcessPoolExecutor(min(jobs, len(work)), mp_context=multiprocessing.get_context("fork"),
                                                initializer=_worker_init) as pool:
        for future in [pool.submit(_simulate_one, name, overrides, overrides_text, mode, precision, channels_last, step)
                       for name, mode, precision in work]:
            future.result()


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _simulate_one(name, overrides, overrides_text, mode, precision, channels_last, step) -> None:
    model = _Model(name, overrides, overrides_text, step)
    try:
        model.step = _model_step(model, mode, precision, step)
        _scaled(model, mode, precision, channels_last, cache=True)
    except (ValueError, OptionError):  # the plan itself says why, when it gets there
        pass


def _domain(model: _Model, mode: str, precision: str, channels_last: bool, patch, batch: int, gpu) -> str:
    """Whether the workspace model was fitted on what this row plans (harness.memory.workspace.domain)."""
    from harness.bench.spec import BenchSpec
    from harness.memory.workspace import domain

    return domain(BenchSpec(model.name, (model.channels, *patch), batch, mode, device="cuda", precision=precision,
                            channels_last=channels_last, overrides=model.overrides_text), gpu=gpu, benchmark=None)


def make_plan(models: list[str], overrides: dict, overrides_text: str, modes, precisions, channels_last: bool,
              budget: int, budget_text: str, margin: float, patch_text: str | None, batch: int, volume, step: int,
              cache: bool = True, jobs: int = 1, gpu: str | None = None) -> Plan:
    plan = Plan(budget, int(budget * (1 - margin)), margin, budget_text, None, batch, volume, gpu=gpu)
    planned = []
    for name in models:  # refuse before simulating anything: a volume of another rank, a patch refused
        model = _Model(name, overrides, overrides_text, step)
        if volume is not None and len(volume) != model.dims:
            raise OptionError(f"--volume {','.join(map(str, volume))} has {len(volume)} sizes but {name} is "
                              f"{model.dims}D. Way out: give {model.dims} sizes, or plan {len(volume)}D models only.")
        if volume is not None and min(volume) < step:
            raise OptionError(f"--volume {','.join(map(str, volume))}: patches grow in steps of {step} (--step), so "
                              f"no patch fits inside a volume smaller than {step} on an axis. Way out: give the "
                              f"volume's real size (e.g. --volume 128,128,64), or a smaller --step.")
        text = patch_text  # the default: 128, or within a volume its size (in steps of --step) up to 128
        if text is None:
            text = "128" if volume is None else ",".join(str(min(128, step * (v // step))) for v in volume)
        patch = _spatial(text, model.dims, "--patch")
        if volume is not None and any(p > v for p, v in zip(patch, volume)):
            raise OptionError(f"--patch {text} is larger than --volume {','.join(map(str, volume))} on an axis: "
                              f"a patch never exceeds the volume it is cut from. Way out: a patch within the volume, "
                              f"or leave --patch out (then the volume's size up to 128, in steps of --step).")
        for mode in modes:
            for precision in precisions:
                if model.smallest_batch(patch, mode, precision) is None:
                    from harness.envelope import check

                    verdict = check(model.variant, (2, model.channels, *patch), overrides, mode, "cuda", precision)
                    raise OptionError(f"--patch {text}: {verdict.message()}")
        planned.append((model, patch))
        plan.patch = patch
    if cache:
        _simulate_ahead(models, overrides, overrides_text, modes, precisions, channels_last, step, jobs)
    for model, patch in planned:
        for mode in modes:
            for precision in precisions:
                row = PlanRow(model.name, mode, precision, channels_last)
                try:
                    model.step = _model_step(model, mode, precision, step)
                    scaled = _scaled(model, mode, precision, channels_last, cache)
                except ValueError as error:
                    row.note = str(error)
                    plan.rows.append(row)
                    continue
                row.largest_batch, note_b = _largest_batch(model, scaled, patch, mode, precision, plan)
                row.largest_patch, note_p = _largest_patch(model, scaled, batch, mode, precision, plan)
                row.nnunet = _nnunet(model, plan, row.largest_patch)
                row.note = "; ".join(n for n in (note_b, note_p) if n)
                row.domain = _domain(model, mode, precision, channels_last, patch, batch, plan.gpu)
                plan.rows.append(row)
    return plan


def _model_step(model: _Model, mode: str, precision: str, step: int) -> int:
    """The smallest multiple of ``step`` by which accepted cubic patches grow (e.g. 32 where a network needs
    sizes that are multiples of 32 and ``step`` is 16)."""
    first = next((s for s in range(max(32, step), 16 * step + 1, step)
                  if model.accepts(2, (s,) * model.dims, mode, precision)), None)
    if first is None:
        return step
    nxt = next((s for s in range(first + step, first + 8 * step + 1, step)
                if model.accepts(2, (s,) * model.dims, mode, precision)), first + step)
    return nxt - first


# --- fixed configurations ----------------------------------------------------------------------------------
def predict_fixed(models: list[str], overrides_text: str, input_shape, batch: int, modes, precisions,
                  channels_last: bool, budget: int | None, gpu: str | None = None) -> list[dict]:
    from harness.memory.predict import predict_peak_memory
    from harness.bench.spec import BenchSpec
    from harness.envelope import check

    out = []
    for name in models:
        for mode in modes:
            for precision in precisions:
                spec = BenchSpec(name, tuple(input_shape), batch, mode, device="cuda", precision=precision,
                                 channels_last=channels_last, overrides=overrides_text)
                verdict = check(name, spec.full_input_shape, spec.constructor_overrides, mode, "cuda", precision)
                if not verdict.supported:
                    raise OptionError(f"--input {','.join(map(str, input_shape))} --batch {batch}: {verdict.message()}")
                done = predict_peak_memory(spec, gpu=gpu, benchmark=None)
                item = {"model": name, "input_shape": list(input_shape), "batch": batch, "mode": mode,
                        "precision": precision, "channels_last": channels_last,
                        "predicted_peak_mb": round(done.peak_mb, 1), "predicted_floor_mb": round(done.floor_mb, 1),
                        "predicted_domain": done.domain}
                if budget is not None:
                    item["budget_mb"] = round(budget / MIB, 1)
                    item["left_mb"] = round(budget / MIB - done.peak_mb, 1)
                out.append(item)
    return out
