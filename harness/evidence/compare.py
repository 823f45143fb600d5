"""``python -m harness compare BASE NEW``: did anything change between two runs (two machines, two torch
versions, today against a committed reference)? BASE and NEW are run folders or run ids under
``--runs-root`` (default ``results/runs/``).

Every configuration measured fine in BASE (matched by the one configuration identity, ``BenchSpec.key``)
gets one verdict, and the verdict names the rule that decided it:

- ``lost`` (rule ``lost``): failed, refused, not settled, non-finite, without raw samples or missing in NEW.
  A finding. (``--missing-ok`` lists the configurations NEW does not have at all instead: a partial sweep
  against a full reference.)
- ``slower``, ``faster``, ``unchanged`` (rule ``between processes`` or ``noise floor``,
  ``harness.stats.ProcessRule``): for the time per step of each throughput block (block_s / block_steps)
  and for the synchronized latencies, the ratio NEW/BASE of the medians of each side's process
  medians, with a 99.8% interval whose spread is the robust between-process spread of the two runs, pooled over the
  configurations compared (runs of ``bench --processes K``, harness/launch/repeats.py), or, where neither
  run has more than one process, the device kind's noise floor; changed only when the interval excludes 1
  and the ratio is beyond the threshold. A configuration is slower when either measure is.
- ``not judged``: too few samples (BASE without them, or fewer than 2 on a side).

The deterministic columns (MACs, step FLOPs, parameters, output shape) are compared exactly: a difference
is *changed work*. Configurations measured in NEW only, or failed in both, are listed. The environment
facts that differ between the two runs are printed above the table; comparing different machines is
allowed ("is this machine as fast as it should be?") and labelled so.

Exit status (harness.options): 0 nothing slower, lost or changed; 1 something slower, lost or with changed
work; 2 wrong input (a missing run, a run without its details.jsonl, a damaged file: one paragraph, the
file named); 3 nothing judged. No torch: the two runs' files are all it reads (harness.store.load).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.bench.machine import MACHINE_FACTS, comparable_machines, machine_differences
from harness.bench.spec import BenchSpec
from harness.options import EXIT_FINDING, EXIT_NOTHING, EXIT_OK, InputFileError, OptionError
from harness.options import require_fraction
from harness.options import report as report_option_error
from harness.stats import BETWEEN, FLOOR, NOISE_FLOOR, Noise, Outcome, ProcessRule, process_medians
from harness.store.load import DETAILS_FILE, RESULTS_FILE, raw_samples, read_run
from harness.store.schema import RUNS_ROOT, exec_mode_of, measured_fine

EXIT_CHANGED = EXIT_FINDING  # the name this module used before harness.options named the contract
LOST, NOT_JUDGED = "lost", "not judged"
# Beyond the machine facts (harness.bench.machine): what else in the environment changes the numbers.
ENVIRONMENT_FACTS = ("gpu_driver", "gpu_sm_clock_mhz", "gpu_mem_clock_mhz", "gpu_max_sm_clock_mhz",
                     "gpu_power_limit_w", "cudnn_tf32", "matmul_tf32")
# Deterministic columns: the work of a configuration, which no timing noise changes.
WORK_COLUMNS = ("gmacs", "step_gflop", "params_total", "params_used", "output_shape")
# The two measures and their raw samples: the time per step of each back-to-back block, synchronized steps.
MEASURES = (("throughput", "step_s"), ("latency", "latency_s"))
# Timing columns a measured row must hold as finite numbers where it holds them at all.
FINITE_COLUMNS = ("latency_ms", "step_ms", "samples_per_s")


# --- a run as compare reads it ---------------------------------------------------------------------

@dataclass
class Run:
    path: Path
    env: dict
    rows: dict[tuple, dict] = field(default_factory=dict)  # measured fine (schema.measured_fine), by BenchSpec.key
    failed: dict[tuple, str] = field(default_factory=dict)  # present, but not a measurement: why
    # raw seconds by measure sample name (step_s, latency_s): one list per process
    processes: dict[tuple, dict[str, list[list[float]]]] = field(default_factory=dict)
    specs: dict[tuple, BenchSpec] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def samples(self) -> dict[tuple, dict[str, list[float]]]:
        """Every process's samples pooled, by configuration."""
        return {key: {name: [x for p in lists for x in p] for name, lists in by_name.items()}
                for key, by_name in self.processes.items()}

    def process_count(self, key: tuple) -> int:
        return max((len(process_medians(lists)) for lists in self.processes.get(key, {}).values()), default=0)


def resolve(argument: str, runs_root: Path, side: str) -> Path:
    """A run folder (or its results.csv), or a run id under ``runs_root``."""
    given = Path(argument)
    for folder in (given.parent if given.name == RESULTS_FILE else given, Path(runs_root) / argument):
        if (folder / RESULTS_FILE).is_file():
            return folder
    existing = sorted(p.name for p in Path(runs_root).glob("*") if (p / RESULTS_FILE).is_file())
    known = ", ".join(existing[-8:]) if existing else "none"
    raise OptionError(f"{side} {argument!r}: no run there, neither a folder holding results.csv nor a run id "
                      f"under {runs_root} (runs there: {known}). Way out: give a run folder or one of those ids.")


def _measured(row: dict) -> bool:
    """``schema.measured_fine``; rows of runs from before the ``warm`` column count when they had a warm-up."""
    if not str(row.get("warm", "")):
        return not row.get("error") and str(row.get("warmup", "0")).isdigit() and int(row["warmup"]) >= 1
    return measured_fine(row)


def _not_finite(row: dict) -> str:
    """The first timing column holding a value that is not a finite number ('' when none does)."""
    for column in FINITE_COLUMNS:
        value = str(row.get(column, "")).strip()
        if value:
            try:
                finite = math.isfinite(float(value))
            except ValueError:
                finite = False
            if not finite:
                return f"non-finite {column} {value!r}"
    return ""


def _spec_of_row(row: dict) -> BenchSpec:
    """The spec of a row without a details line (for its label)."""
    return BenchSpec(row["model"], tuple(int(n) for n in row["input_shape"].split("x")), int(row["batch"]),
                     row["mode"], row.get("device") or "cpu", row.get("dtype") or "fp32", row.get("channels_last") == "True",
                     exec_mode_of(row), overrides=row.get("overrides", ""))


def _process_samples(record: dict) -> dict[str, list[list[float]]]:
    """A details record's raw seconds, one list per process: its ``processes`` (a run of ``bench --processes
    K``), else the record itself as one process."""
    processes = record.get("processes") or [record]
    samples = [raw_samples(process) for process in processes if isinstance(process, dict)]
    return {name: [s[name] for s in samples] for _, name in MEASURES}


def load_run(path: Path) -> Run:
    """The run's valid rows, its failed ones (errors, refusals, unsettled or non-finite), each configuration's
    raw samples by process and its environment, read by the one loader (harness.store.load.read_run).
    Raises InputFileError (exit 2) for a damaged run and for one without its details.jsonl."""
    stored = read_run(path)
    details = stored.folder / DETAILS_FILE
    if not details.is_file():
        raise InputFileError(f"{details}: missing, so the run {stored.name} has no raw samples and no configuration "
                             f"of it can be judged. Way out: give the run folder as `python -m harness bench` wrote it "
                             f"(details.jsonl beside results.csv), or restore the file from git.")
    env = stored.environment or {k: v for k, v in stored.row_environment.items() if k in MACHINE_FACTS + ENVIRONMENT_FACTS}
    run = Run(stored.folder, env, warnings=list(stored.warnings))
    for key, record in stored.details.items():
        if record.get("error"):
            continue
        samples = _process_samples(record)
        if any(not math.isfinite(x) for lists in samples.values() for p in lists for x in p):
            run.failed[key] = "non-finite raw samples in details.jsonl"
        run.processes[key] = samples
        run.specs[key] = BenchSpec.from_record(record["spec"])
    for key, row in stored.keyed():
        run.specs.setdefault(key, _spec_of_row(row))
        why = "" if _measured(row) else f"error {row['error'][:80]!r}" if row.get("error") else "not warm"
        why = why or _not_finite(row) or ("non-finite raw samples in details.jsonl"
                                          if run.failed.get(key, "").startswith("non-finite raw") else "")
        if not why:
            run.rows[key] = row
            run.failed.pop(key, None)
        elif key not in run.rows:
            run.failed[key] = why
    for key in [key for key in run.failed if key not in run.specs]:  # a details line without any row
        del run.failed[key]
    return run


# --- the comparison (bookkeeping) ------------------------------------------------------------------

@dataclass(frozen=True)
class WorkChange:
    column: str
    base: str
    new: str


@dataclass(frozen=True)
class ConfigComparison:
    spec: BenchSpec
    throughput: Outcome | None  # seconds per step from back-to-back blocks; ratio NEW/BASE of times
    latency: Outcome | None  # seconds per synchronized step
    work: tuple[WorkChange, ...] = ()
    lost: str = ""  # why the configuration is lost in NEW (verdict "lost"); empty otherwise
    processes: tuple[int, int] = (0, 0)  # processes with samples: BASE, NEW

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def outcomes(self) -> dict[str, Outcome]:
        return {name: o for name, o in (("throughput", self.throughput), ("latency", self.latency)) if o is not None}

    @property
    def verdict(self) -> str:
        """lost; else slower when either measure is; faster when one is and none is slower; unchanged when a
        measure was judged and none changed; not judged when neither had the samples."""
        if self.lost:
            return LOST
        outcomes = [o.verdict.outcome for o in self.outcomes.values()]
        for verdict in ("slower", "faster", "unchanged"):
            if verdict in outcomes:
                return verdict
        return NOT_JUDGED

    @property
    def rule(self) -> str:
        """The name of the rule that decided the verdict: lost, between processes, noise floor, not judged."""
        if self.lost:
            return LOST
        deciding = [o for o in self.outcomes.values() if o.verdict.outcome == self.verdict]
        if self.verdict == NOT_JUDGED or not deciding:
            return NOT_JUDGED
        return FLOOR if deciding[0].verdict.detail.startswith(FLOOR) else BETWEEN

    @property
    def rule_statement(self) -> str:
        if self.lost:
            return LOST_RULE
        deciding = [o for o in self.outcomes.values() if o.verdict.outcome == self.verdict]
        return deciding[0].verdict.rule if deciding else ""

    @property
    def worst_ratio(self) -> float:
        ratios = [o.delta.ratio for o in self.outcomes.values() if o.delta is not None]
        return max(ratios) if ratios else 0.0


LOST_RULE = ("lost when the configuration is measured fine in BASE but in NEW failed, was refused, did not settle, "
             "has a non-finite timing, has no raw samples, or is missing (the last listed instead under --missing-ok): "
             "a finding, whatever the timings")


@dataclass
class Comparison:
    base: Run
    new: Run
    rule: ProcessRule
    configs: list[ConfigComparison] = field(default_factory=list)  # lost first, then worst first
    only_base: list[tuple[str, str]] = field(default_factory=list)  # (label, why): not a measurement in BASE either
    only_new: list[tuple[str, str]] = field(default_factory=list)
    not_measured: list[tuple[str, str]] = field(default_factory=list)
    noise: dict[tuple[str, str], Noise] = field(default_factory=dict)  # (measure, device): the spread used

    @property
    def machine_differences(self) -> list[str]:
        """Every environment fact that differs (the machine facts, then driver, clocks, power, TF32)."""
        extra = [f"{fact}: {self.base.env[fact]!r} vs {self.new.env[fact]!r}" for fact in ENVIRONMENT_FACTS
                 if fact in self.base.env and fact in self.new.env and str(self.base.env[fact]) != str(self.new.env[fact])]
        return machine_differences(self.base.env, self.new.env) + extra

    @property
    def same_machine(self) -> bool:
        return comparable_machines(self.base.env, self.new.env)

    def count(self, verdict: str) -> int:
        return sum(c.verdict == verdict for c in self.configs)

    @property
    def work_changed(self) -> list[ConfigComparison]:
        return [c for c in self.configs if c.work]

    @property
    def judged(self) -> int:
        return sum(self.count(v) for v in ("slower", "faster", "unchanged"))

    @property
    def status(self) -> int:
        if self.count(LOST) or self.count("slower") or self.work_changed:
            return EXIT_FINDING
        return EXIT_OK if self.judged else EXIT_NOTHING

    @property
    def rules(self) -> dict[str, str]:
        """The statements of the rules that decided some verdict, by name."""
        used = {c.rule: c.rule_statement for c in self.configs if c.rule != NOT_JUDGED}
        return {name: used[name] for name in (LOST, BETWEEN, FLOOR) if name in used}

    def record(self) -> dict:
        return {"base": _run_record(self.base), "new": _run_record(self.new),
                "machines": {"same": self.same_machine, "differences": self.machine_differences},
                "rules": self.rules, "rule": self.rule.statement(BETWEEN), "threshold": self.rule.threshold,
                "level": self.rule.level, "noise_floor": NOISE_FLOOR,
                "noise": [{"measure": measure, "device": device, "sd": n.sd, "df": n.df, "source": n.source}
                          for (measure, device), n in self.noise.items()],
                "ratios": "NEW/BASE of times (seconds per step): above 1 is slower; the ratio of samples/s is its reciprocal",
                "configurations": [_config_record(c) for c in self.configs],
                "only_in_base": [{"config": label, "reason": why} for label, why in self.only_base],
                "only_in_new": [{"config": label, "reason": why} for label, why in self.only_new],
                "not_measured": [{"config": label, "reason": why} for label, why in self.not_measured],
                "warnings": [*self.base.warnings, *self.new.warnings],
                "summary": self.summary(), "exit_status": self.status}

    def summary(self) -> dict:
        return {"compared": len(self.configs), "judged": self.judged,
                **{v: self.count(v) for v in (LOST, "slower", "faster", "unchanged", NOT_JUDGED)},
                "changed_work": len(self.work_changed), "only_in_base": len(self.only_base),
                "only_in_new": len(self.only_new), "not_measured": len(self.not_measured)}


def _run_record(run: Run) -> dict:
    return {"run": run.name, "path": str(run.path),
            "environment": {k: run.env.get(k) for k in (*MACHINE_FACTS, *ENVIRONMENT_FACTS, "git_commit") if k in run.env}}


def _outcome_record(outcome: Outcome | None, processes: tuple[int, int]) -> dict | None:
    if outcome is None:
        return None
    delta = outcome.delta
    return {"base_ms": None if outcome.control is None else 1e3 * outcome.control,
            "new_ms": None if outcome.treatment is None else 1e3 * outcome.treatment,
            "ratio": delta.ratio if delta else None, "ci_low": delta.interval.low if delta else None,
            "ci_high": delta.interval.high if delta else None, "n_base": outcome.n_control, "n_new": outcome.n_treatment,
            "processes_base": processes[0], "processes_new": processes[1],
            "verdict": outcome.verdict.outcome, "detail": outcome.verdict.detail}


def _config_record(c: ConfigComparison) -> dict:
    return {"config": c.label, "key": list(c.spec.key), "verdict": c.verdict, "rule": c.rule,
            "rule_statement": c.rule_statement, "reason": c.lost,
            **{name: _outcome_record(outcome, c.processes) for name, outcome in
               (("throughput", c.throughput), ("latency", c.latency))},
            "work_changed": [{"column": w.column, "base": w.base, "new": w.new} for w in c.work]}


def _same_value(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def work_changes(base: dict, new: dict) -> tuple[WorkChange, ...]:
    """The deterministic columns that differ; a column empty on either side (an older run) is not compared."""
    return tuple(WorkChange(column, base[column], new[column]) for column in WORK_COLUMNS
                 if base.get(column, "") != "" and new.get(column, "") != "" and not _same_value(base[column], new[column]))


def _has_samples(run: Run, key: tuple) -> bool:
    return any(x for lists in run.processes.get(key, {}).values() for x in lists)


def compare(base: Run, new: Run, rule: ProcessRule, missing_ok: bool = False) -> Comparison:
    result = Comparison(base, new, rule)
    keys = list(dict.fromkeys([*base.rows, *base.failed, *new.rows, *new.failed]))
    judged = []
    for key in keys:
        in_base, in_new = key in base.rows or key in base.failed, key in new.rows or key in new.failed
        spec = new.specs.get(key) or base.specs[key]
        if key in base.rows:  # measured fine in BASE: judged, or lost
            lost = ""
            if not in_new and not missing_ok:
                lost = "missing in NEW"
            elif key in new.failed:
                lost = f"NEW: {new.failed[key]}"
            elif in_new and _has_samples(base, key) and not _has_samples(new, key):
                lost = "NEW: no raw samples in details.jsonl"
            if lost:
                result.configs.append(ConfigComparison(spec, None, None, lost=lost))
            elif not in_new:
                result.only_base.append((spec.label, "measured; NEW has no row for it (--missing-ok)"))
            else:
                judged.append(key)
            continue
        if not in_new:
            result.only_base.append((spec.label, base.failed[key]))
        elif not in_base:
            result.only_new.append((spec.label, new.failed.get(key, "measured")))
        else:
            why = "; ".join(f"{side}: {run.failed[key]}" for side, run in (("BASE", base), ("NEW", new))
                            if key in run.failed)
            result.not_measured.append((spec.label, why))
    # The spread of process medians, per measure and device kind, pooled over the configurations judged.
    for measure, samples in MEASURES:
        groups: dict[str, list[list[float]]] = {}
        for key in judged:
            for run in (base, new):
                groups.setdefault(run.specs[key].device, []).append(
                    process_medians(run.processes.get(key, {}).get(samples, [])))
        for device, values in groups.items():
            result.noise[(measure, device)] = rule.noise(values, device)
    for key in judged:
        spec = new.specs.get(key) or base.specs[key]
        outcomes = {measure: rule.judge(base.processes.get(key, {}).get(samples, []),
                                        new.processes.get(key, {}).get(samples, []),
                                        result.noise[(measure, base.specs[key].device)])
                    for measure, samples in MEASURES}
        result.configs.append(ConfigComparison(spec, **outcomes, work=work_changes(base.rows[key], new.rows[key]),
                                               processes=(base.process_count(key), new.process_count(key))))
    order = {LOST: -1, "slower": 0, "faster": 2, "unchanged": 3, NOT_JUDGED: 4}
    result.configs.sort(key=lambda c: (order[c.verdict] if not (c.work and c.verdict not in ("slower", LOST)) else 1,
                                       -c.worst_ratio))
    return result


# --- rendering -------------------------------------------------------------------------------------

def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = 1e3 * seconds
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _change(outcome: Outcome | None) -> str:
    if outcome is None:
        return "-"
    if not outcome.n_control and not outcome.n_treatment:
        return "no samples"
    if outcome.delta is None:
        return f"{_ms(outcome.control)} -> {_ms(outcome.treatment)}  ({outcome.n_control} vs {outcome.n_treatment} samples)"
    interval = outcome.delta.interval
    return (f"{_ms(outcome.control)} -> {_ms(outcome.treatment)}  {outcome.delta.ratio:.3f} "
            f"[{interval.low:.3f}, {interval.high:.3f}]")


def _why(c: ConfigComparison) -> str:
    """The verdict, the measures that made it and the rule that decided it."""
    if c.lost:
        return f"lost ({c.lost})"
    if c.verdict in ("slower", "faster"):
        changed = [name for name, o in c.outcomes.items() if o.verdict.outcome == c.verdict]
        return f"{c.verdict} ({', '.join(changed)}; {c.rule})"
    return f"{c.verdict} ({c.rule})" if c.verdict == "unchanged" else c.verdict


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory where it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _header(result: Comparison) -> list[str]:
    lines = []
    for side, run in (("BASE", result.base), ("NEW", result.new)):
        env = run.env
        lines.append(f"{side:4s} {_shown(run.path)}: {env.get('device_name', '?')}, torch {env.get('torch', '?')}"
                     f"{', CUDA ' + str(env['cuda']) if env.get('cuda') else ''}, {env.get('threads', '?')} threads"
                     f"{', commit ' + str(env['git_commit'])[:10] if env.get('git_commit') else ''}")
    differences = result.machine_differences
    if result.same_machine:
        lines.append("machines: the same (" + ", ".join(MACHINE_FACTS) + " agree)" +
                     (f"; other differences: {'; '.join(differences)}" if differences else ""))
    else:
        lines.append("machines: DIFFERENT, so the ratios compare the machines as well as the code (allowed: "
                     "is this machine as fast as it should be?):")
        lines += [f"  {difference}" for difference in differences]
    return lines


def _noise_line(result: Comparison) -> str:
    """The spread used per measure, and the smallest slow-down it lets the rule call with the commonest
    process counts: what this comparison can resolve."""
    counts = Counter(c.processes for c in result.configs if all(c.processes))
    k_base, k_new = counts.most_common(1)[0][0] if counts else (1, 1)
    parts = []
    for (measure, device), n in result.noise.items():
        parts.append(f"{measure} ({device}) {n.sd:.2%}, " + (f"pooled over {n.df} df" if n.df else "the noise floor")
                     + f": resolves a change of {result.rule.resolution(n, k_base, k_new) - 1:.0%} or more")
    return (f"spread of a process median ({k_base} vs {k_new} processes): " + ("; ".join(parts) if parts else
                                                                              "none (nothing judged)"))


def _footer(result: Comparison) -> list[str]:
    s = result.summary()
    lines = [f"rule ({name}): {statement}" for name, statement in result.rules.items()]
    lines += [_noise_line(result),
              f"ratios: NEW/BASE of times (ms per step, each side the median of its processes' medians), above "
              f"1 is slower; throughput: time per step of back-to-back blocks; latency: synchronized single steps; "
              f"[{100 * result.rule.level:.3g}% interval] (docs/compare.md)",
              f"{s['compared']} compared: {s['lost']} lost, {s['slower']} slower, {s['faster']} faster, "
              f"{s['unchanged']} unchanged, {s['not judged']} not judged, {s['changed_work']} changed work; "
              f"{s['only_in_base']} only in BASE, {s['only_in_new']} only in NEW, {s['not_measured']} not measured on "
              f"both: exit {result.status}" + (" (nothing judged)" if result.status == EXIT_NOTHING else "")]
    return lines


def _listed(result: Comparison) -> list[tuple[str, list[tuple[str, str]]]]:
    return [("only in BASE, not a measurement there", result.only_base), ("only in NEW", result.only_new),
            ("not measured fine on both sides", result.not_measured)]


def render_text(result: Comparison) -> str:
    lines = _header(result) + [""]
    width = max([len(c.label) for c in result.configs] + [13])
    ci = f"{100 * result.rule.level:.3g}% CI"
    lines.append(f"{'configuration':{width}s}  {'throughput ms/step: BASE -> NEW  ratio [' + ci + ']':50s}  "
                 f"{'latency ms: BASE -> NEW  ratio [' + ci + ']':50s}  verdict (rule)")
    for c in result.configs:
        lines.append(f"{c.label:{width}s}  {_change(c.throughput):50s}  {_change(c.latency):50s}  {_why(c)}")
        lines += [f"{'':{width}s}  changed work: {w.column} {w.base} -> {w.new}" for w in c.work]
    for title, entries in _listed(result):
        if entries:
            lines.append(f"\n{title} ({len(entries)}):")
            lines += [f"  {label}: {why}" for label, why in entries]
    return "\n".join(lines + [""] + _footer(result))


def render_markdown(result: Comparison) -> str:
    lines = [f"**compare** `{result.base.name}` → `{result.new.name}`", ""]
    lines += [f"- {line.strip()}" for line in _header(result)] + [""]
    ci = f"{100 * result.rule.level:.3g}% CI"
    lines += [f"| configuration | throughput ms/step (BASE → NEW) | ratio [{ci}] | latency ms (BASE → NEW) | "
              f"ratio [{ci}] | verdict (rule) |", "|---|---|---|---|---|---|"]
    for c in result.configs:
        cells = [f"`{c.label}`"]
        for outcome in (c.throughput, c.latency):
            if outcome is None:
                cells += ["-", "-"]
                continue
            cells.append(f"{_ms(outcome.control)} → {_ms(outcome.treatment)}")
            delta = outcome.delta
            cells.append(f"{delta.ratio:.3f} [{delta.interval.low:.3f}, {delta.interval.high:.3f}]" if delta else
                         f"{outcome.n_control} vs {outcome.n_treatment} samples")
        verdict = f"**{_why(c)}**" if c.verdict in ("slower", LOST) else _why(c)
        verdict += "".join(f"; **changed work: {w.column} {w.base} → {w.new}**" for w in c.work)
        lines.append("| " + " | ".join(cells + [verdict]) + " |")
    for title, entries in _listed(result):
        if entries:
            lines += ["", f"{title} ({len(entries)}): " + "; ".join(f"`{label}` ({why})" for label, why in entries)]
    return "\n".join(lines + [""] + [f"*{line}*" for line in _footer(result)]) + "\n"


# --- command line ----------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    from harness.options import EXIT_CODES_HELP

    p = argparse.ArgumentParser(prog="python -m harness compare", description=__doc__, epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", metavar="BASE", help="run folder, or run id under --runs-root")
    p.add_argument("new", metavar="NEW", help="run folder, or run id under --runs-root")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="a change counts only when its ratio is beyond 1 + THRESHOLD (or below 1 / (1 + THRESHOLD)) "
                        "and its 99.8%% interval excludes 1 (default 0.05)")
    p.add_argument("--missing-ok", action="store_true",
                   help="configurations of BASE that NEW has no row for are listed, not lost (a partial sweep against "
                        "a full reference); failed, refused, unsettled or non-finite ones in NEW stay lost")
    p.add_argument("--runs-root", type=Path, default=RUNS_ROOT, help=f"where run ids are looked up (default {RUNS_ROOT})")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="one record per configuration (verdict, rule, ratios, intervals) as JSON, on stdout or to FILE")
    p.add_argument("--markdown", nargs="?", const="-", metavar="FILE",
                   help="the table as Markdown (for a pull-request comment), on stdout or to FILE")
    return p


def _emit(target: str | None, text: str) -> bool:
    """Write ``text`` to FILE, or to stdout for ``-``; True when it went to stdout."""
    if target is None:
        return False
    if target == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return True
    Path(target).write_text(text)
    return False


def _writable(target: str | None, option: str) -> None:
    """Refuse an output FILE that cannot be written, before anything is: its folder must exist."""
    if target not in (None, "-") and not Path(target).resolve().parent.is_dir():
        raise OptionError(f"{option} {target}: its folder {Path(target).resolve().parent} does not exist. Way out: "
                          f"create it, or give a FILE in an existing folder.")


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as stop:  # argparse: usage errors exit 2, --help 0
        return int(stop.code or 0)
    try:
        require_fraction("--threshold", args.threshold)
        if args.json == "-" and args.markdown == "-":
            raise OptionError("--json and --markdown both asked for stdout. Way out: give one of them a FILE.")
        _writable(args.json, "--json")
        _writable(args.markdown, "--markdown")
        base = load_run(resolve(args.base, args.runs_root, "BASE"))
        new = load_run(resolve(args.new, args.runs_root, "NEW"))
    except OptionError as error:  # InputFileError too: a damaged run, a missing details.jsonl
        return report_option_error(error)
    for warning in base.warnings + new.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    result = compare(base, new, ProcessRule(threshold=args.threshold), missing_ok=args.missing_ok)
    quiet = _emit(args.json, json.dumps(result.record(), indent=1) + "\n")
    quiet |= _emit(args.markdown, render_markdown(result))
    if not quiet:
        print(render_text(result))
    if result.status == EXIT_NOTHING:
        print(f"nothing judged: no configuration measured fine in BASE has timings in both runs to compare "
              f"({len(base.rows)} measured in BASE, {len(new.rows)} in NEW). Way out: compare runs of the same "
              f"profile and device (configurations match on model, overrides, input shape, batch, mode, device, "
              f"dtype, channels-last and execution mode).", file=sys.stderr)
    return result.status


if __name__ == "__main__":
    raise SystemExit(main())
