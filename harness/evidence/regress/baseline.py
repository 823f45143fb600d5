"""A committed run as ``regress`` reads it (its valid measurements and their latency samples, keyed by
``BenchSpec.key``; its machine), and which committed run to compare with when none is named. The run is
read by the store's one loader (``harness.store.load.read_run``): a damaged run raises InputFileError (exit 2),
dropped lines are warned about on stderr."""
from __future__ import annotations

from pathlib import Path

from harness.bench.machine import comparable_machines
from harness.bench.spec import BenchSpec
from harness.evidence.regress.tree import REPO
from harness.store.load import read_run
from harness.store.schema import measured_fine


class Baseline:
    """One committed run: its valid measurements (``schema.measured_fine``) by configuration key, the
    configurations it holds only as an error or a not-warm row, their synchronized-step samples, its machine."""

    def __init__(self, run: Path, device: str):
        self.run = Path(run)
        stored = read_run(self.run)
        stored.warn()
        self.rows: dict[tuple, dict] = {}
        self.invalid: dict[tuple, str] = {}
        self.device_rows = 0
        for key, row in stored.keyed():
            if row["device"] != device:
                continue
            self.device_rows += 1
            if measured_fine(row):
                self.rows[key] = row
                self.invalid.pop(key, None)
            elif key not in self.rows:
                self.invalid[key] = (f"error {row['error'][:80]!r}" if row.get("error") else
                                     "not warm (no settled warm-up; or a run too old to record it)")
        # synchronized steps: what the comparison times now (older runs: times_s)
        self.samples: dict[tuple, list[float]] = {key: stored.samples(key)["latency_s"] for key in stored.details
                                                  if stored.samples(key)["latency_s"]}
        self.env = stored.environment

    def why_not(self, key: tuple) -> str | None:
        """None when the run holds a valid, timed measurement of ``key``; else why not."""
        if key in self.rows:
            return None if key in self.samples else "no timing samples in its details.jsonl"
        return self.invalid.get(key, "no row for it")

    def holds(self, keys: list[tuple]) -> int:
        return sum(self.why_not(key) is None for key in keys)

    def same_machine(self, here: dict) -> bool:
        return bool(self.env) and comparable_machines(self.env, here)

    @property
    def name(self) -> str:
        return str(self.run.relative_to(REPO)) if self.run.is_relative_to(REPO) else str(self.run)


def describe_machine(env: dict) -> str:
    if not env:
        return "an unrecorded machine (no environment.json)"
    return (f"{env.get('device_name')} ({env.get('cpu_count')} CPUs, {env.get('threads')} threads, "
            f"torch {env.get('torch')}{', CUDA ' + env['cuda'] if env.get('cuda') else ''})")


def choose_baseline(runs_root: Path, device: str, keys: list[tuple], here: dict) -> tuple[Baseline | None, str]:
    """The committed run to compare with, and why it was chosen: among the runs with rows for ``device``,
    those from this machine (``comparable_machines``), the one holding the most of ``keys`` (ties: the newest
    by name, which starts with its UTC time). Without a run from this machine, the best of the others, said
    so (its facts can still be checked; its timings cannot)."""
    runs = [Baseline(p, device) for p in sorted(runs_root.glob("*")) if (p / "results.csv").is_file()]
    runs = [b for b in runs if b.device_rows]
    if not runs:
        return None, ""
    same = [b for b in runs if b.same_machine(here)]
    pool = same or runs
    best = max(pool, key=lambda b: (b.holds(keys), b.run.name))
    others = ", ".join(f"{b.run.name} {b.holds(keys)}" for b in sorted(pool, key=lambda b: b.run.name, reverse=True)
                       if b is not best)
    scope = f"{len(pool)} committed {device} run{'s' * (len(pool) != 1)} " + (
        "from this machine" if same else "(none from this machine)")
    why = (f"baseline {best.run.name}: it holds {best.holds(keys)} of the {len(keys)} planned configurations, "
           f"the most among the {scope}{'; ties go to the newest' if len(pool) > 1 else ''}"
           f"{' (others: ' + others + ')' if others else ''}")
    if not same:
        why += (f". No committed {device} run under {runs_root} was measured on this machine, "
                f"{describe_machine(here)}, so its timings cannot be judged")
    return best, why


def way_out(missing: list[BenchSpec], device: str, models_pattern: str | None, user_models: list[str]) -> str:
    """How to get a baseline that holds ``missing``: a bench profile that measures them all, if one does."""
    from harness.bench.profiles import PROFILES, specs as profile_specs

    wanted = {spec.key for spec in missing}
    models = sorted({spec.model for spec in missing})
    for name, profile in PROFILES.items():
        if profile.warmup < 1:  # smoke: its rows are not warm, so never a baseline
            continue
        measured = {s.key for s in profile_specs(name, device, models, precision="fp32")}
        if wanted <= measured:
            pattern = (f" --models {models[0]}" if len(models) == 1 else
                       f" --models '{models_pattern}'" if models_pattern else "")
            user = "".join(f" --model {ref}" for ref in user_models if any(m in ref for m in models))
            return (f"pass --baseline RUN_DIR naming a run that holds them, or measure them on this machine "
                    f"(`nox -s bench -- --profile {name} --device {device}{pattern}{user}`, then commit the "
                    f"run), or compare two trees with --against REF")
    return ("no bench profile measures all of them, so pass --baseline RUN_DIR naming a run that holds them, "
            "or compare two trees with --against REF")
