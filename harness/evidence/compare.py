"""``python -m harness compare BASE NEW``: did anything change between two runs (two machines, two torch
versions, today against a committed reference)? BASE and NEW are run folders or run ids under
``--runs-root`` (default ``results/runs/``).

For every configuration measured fine in both (matched by the one configuration identity,
``BenchSpec.key``), the ratio NEW/BASE of the time per step of each throughput block (block_s /
block_steps) and of the synchronized latencies, each with a 95% bootstrap interval from the raw samples
in ``details.jsonl``, and a verdict ``faster``, ``slower`` or ``unchanged`` by
``harness.stats.ThresholdRule`` (stated with the table; docs/compare.md gives its false-alarm
rate). A configuration is slower when either measure is. The deterministic columns (MACs, step FLOPs,
parameters, output shape) are compared exactly: a difference is *changed work*. Configurations on one
side only, or not measured fine on a side, are listed. The environment facts that differ between the
two runs are printed above the table; comparing different machines is allowed ("is this machine as
fast as it should be?") and labelled so.

Exit status: 0 when nothing is slower and no work changed; 1 when something is slower or its work
changed; 2 for bad arguments (a missing run, no configuration measured in both). No torch: the two runs'
files are all it reads.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.bench.machine import MACHINE_FACTS, comparable_machines, machine_differences
from harness.bench.spec import BenchSpec
from harness.store.run_store import measured_details
from harness.stats import Outcome, ThresholdRule
from harness.options import OptionError, require_fraction
from harness.options import report as report_option_error
from harness.store.csvfile import read_rows
from harness.store.schema import RUNS_ROOT, exec_mode_of, measured_fine, row_key

EXIT_OK, EXIT_CHANGED = 0, 1
# Beyond the machine facts (harness.bench.machine): what else in the environment changes the numbers.
ENVIRONMENT_FACTS = ("gpu_driver", "gpu_sm_clock_mhz", "gpu_mem_clock_mhz", "gpu_max_sm_clock_mhz",
                     "gpu_power_limit_w", "cudnn_tf32", "matmul_tf32")
# Deterministic columns: the work of a configuration, which no timing noise changes.
WORK_COLUMNS = ("gmacs", "step_gflop", "params_total", "params_used", "output_shape")
# The two measures and their raw samples: the time per step of each back-to-back block, synchronized steps.
MEASURES = (("throughput", "step_s"), ("latency", "latency_s"))


# --- a run as compare reads it ---------------------------------------------------------------------

@dataclass
class Run:
    path: Path
    env: dict
    rows: dict[tuple, dict] = field(default_factory=dict)  # measured fine (schema.measured_fine), by BenchSpec.key
    failed: dict[tuple, str] = field(default_factory=dict)  # present, but not a measurement: why
    samples: dict[tuple, dict[str, list[float]]] = field(default_factory=dict)  # raw seconds: step_s, latency_s
    specs: dict[tuple, BenchSpec] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name


def resolve(argument: str, runs_root: Path, side: str) -> Path:
    """A run folder (or its results.csv), or a run id under ``runs_root``."""
    given = Path(argument)
    for folder in (given.parent if given.name == "results.csv" else given, Path(runs_root) / argument):
        if (folder / "results.csv").is_file():
            return folder
    existing = sorted(p.name for p in Path(runs_root).glob("*") if (p / "results.csv").is_file())
    known = ", ".join(existing[-8:]) if existing else "none"
    raise OptionError(f"{side} {argument!r}: no run there, neither a folder holding results.csv nor a run id "
                      f"under {runs_root} (runs there: {known}). Way out: give a run folder or one of those ids.")


def _measured(row: dict) -> bool:
    """``schema.measured_fine``; rows of runs from before the ``warm`` column count when they had a warm-up."""
    if "warm" not in row:
        return not row.get("error") and str(row.get("warmup", "0")).isdigit() and int(row["warmup"]) >= 1
    return measured_fine(row)


def _spec_of_row(row: dict) -> BenchSpec:
    """The spec of a row without a details line (for its label)."""
    return BenchSpec(row["model"], tuple(int(n) for n in row["input_shape"].split("x")), int(row["batch"]),
                     row["mode"], row.get("device", "cpu"), row.get("dtype") or "fp32", row.get("channels_last") == "True",
                     exec_mode_of(row), overrides=row.get("overrides", ""))


def load_run(path: Path) -> Run:
    """The run's valid rows, its failed ones, each configuration's raw samples and its environment (the first
    attempt's environment.json; without one, the environment columns of its first row)."""
    env = {}
    if (path / "environment.json").is_file():
        env = json.loads((path / "environment.json").read_text()).get("environment", {})
    rows = read_rows(path / "results.csv").rows
    run = Run(path, env or {k: v for k, v in (rows[0] if rows else {}).items() if k in MACHINE_FACTS + ENVIRONMENT_FACTS})
    labels: dict[tuple, BenchSpec] = {}
    for row in rows:
        row = {"overrides": "", "channels_last": "False", "dtype": "fp32", "device": "cpu", **row}
        key = row_key(row)
        labels[key] = _spec_of_row(row)
        if _measured(row):
            run.rows[key] = row
            run.failed.pop(key, None)
        elif key not in run.rows:
            run.failed[key] = f"error {row['error'][:80]!r}" if row.get("error") else "not warm"
    for spec, record in measured_details(path):
        steps = record.get("block_steps") or 0
        run.specs[spec.key] = spec
        run.samples[spec.key] = {"latency_s": list(record.get("latency_s") or record.get("times_s") or []),
                                 "step_s": [block / steps for block in record.get("block_s") or []] if steps else []}
    for key, spec in labels.items():
        run.specs.setdefault(key, spec)
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
    throughput: Outcome  # seconds per step from back-to-back blocks; ratio NEW/BASE of times
    latency: Outcome  # seconds per synchronized step
    work: tuple[WorkChange, ...] = ()

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def outcomes(self) -> dict[str, Outcome]:
        return {"throughput": self.throughput, "latency": self.latency}

    @property
    def verdict(self) -> str:
        """slower when either measure is; faster when one is and none is slower; unchanged when a measure was
        judged and none changed; not judged when neither had the samples."""
        outcomes = [o.verdict.outcome for o in self.outcomes.values()]
        for verdict in ("slower", "faster", "unchanged"):
            if verdict in outcomes:
                return verdict
        return "not judged"

    @property
    def worst_ratio(self) -> float:
        ratios = [o.delta.ratio for o in self.outcomes.values() if o.delta is not None]
        return max(ratios) if ratios else 0.0


@dataclass
class Comparison:
    base: Run
    new: Run
    rule: ThresholdRule
    configs: list[ConfigComparison] = field(default_factory=list)  # worst first
    only_base: list[tuple[str, str]] = field(default_factory=list)  # (label, why)
    only_new: list[tuple[str, str]] = field(default_factory=list)
    not_measured: list[tuple[str, str]] = field(default_factory=list)

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
    def status(self) -> int:
        return EXIT_CHANGED if self.count("slower") or self.work_changed else EXIT_OK

    def record(self) -> dict:
        return {"base": _run_record(self.base), "new": _run_record(self.new),
                "machines": {"same": self.same_machine, "differences": self.machine_differences},
                "rule": self.rule.statement(), "threshold": self.rule.threshold, "alpha": self.rule.alpha,
                "ratios": "NEW/BASE of times (seconds per step): above 1 is slower; the ratio of samples/s is its reciprocal",
                "configurations": [_config_record(c, self.rule) for c in self.configs],
                "only_in_base": [{"config": label, "reason": why} for label, why in self.only_base],
                "only_in_new": [{"config": label, "reason": why} for label, why in self.only_new],
                "not_measured": [{"config": label, "reason": why} for label, why in self.not_measured],
                "summary": self.summary(), "exit_status": self.status}

    def summary(self) -> dict:
        return {"compared": len(self.configs), **{v: self.count(v) for v in ("slower", "faster", "unchanged", "not judged")},
                "changed_work": len(self.work_changed), "only_in_base": len(self.only_base),
                "only_in_new": len(self.only_new), "not_measured": len(self.not_measured)}


def _run_record(run: Run) -> dict:
    return {"run": run.name, "path": str(run.path),
            "environment": {k: run.env.get(k) for k in (*MACHINE_FACTS, *ENVIRONMENT_FACTS, "git_commit") if k in run.env}}


def _outcome_record(outcome: Outcome, rule: ThresholdRule) -> dict:
    delta, rank = outcome.delta, outcome.rank
    return {"base_ms": None if outcome.control is None else 1e3 * outcome.control,
            "new_ms": None if outcome.treatment is None else 1e3 * outcome.treatment,
            "ratio": delta.ratio if delta else None, "ci_low": delta.interval.low if delta else None,
            "ci_high": delta.interval.high if delta else None, "n_base": outcome.n_control, "n_new": outcome.n_treatment,
            "rank_test": {"u": rank.u, "p": rank.p, "method": rank.method} if rank else None,
            "rank_test_applies": rule.rank_test_applies(outcome.n_control, outcome.n_treatment),
            "verdict": outcome.verdict.outcome, "detail": outcome.verdict.detail}


def _config_record(c: ConfigComparison, rule: ThresholdRule) -> dict:
    return {"config": c.label, "key": list(c.spec.key), "verdict": c.verdict, "rule": c.throughput.verdict.rule,
            **{name: _outcome_record(outcome, rule) for name, outcome in c.outcomes.items()},
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


def compare(base: Run, new: Run, rule: ThresholdRule) -> Comparison:
    result = Comparison(base, new, rule)
    keys = list(dict.fromkeys([*base.rows, *base.failed, *new.rows, *new.failed]))
    for key in keys:
        in_base, in_new = key in base.rows or key in base.failed, key in new.rows or key in new.failed
        if not in_new:
            result.only_base.append((base.specs[key].label, base.failed.get(key, "measured")))
            continue
        if not in_base:
            result.only_new.append((new.specs[key].label, new.failed.get(key, "measured")))
            continue
        if key not in base.rows or key not in new.rows:
            why = "; ".join(f"{side}: {run.failed[key]}" for side, run in (("BASE", base), ("NEW", new))
                            if key in run.failed)
            result.not_measured.append((base.specs[key].label, why))
            continue
        samples_base, samples_new = base.samples.get(key, {}), new.samples.get(key, {})
        outcomes = {name: rule.judge(samples_base.get(samples, []), samples_new.get(samples, []))
                    for name, samples in MEASURES}
        result.configs.append(ConfigComparison(new.specs.get(key) or base.specs[key], **outcomes,
                                               work=work_changes(base.rows[key], new.rows[key])))
    order = {"slower": 0, "faster": 2, "unchanged": 3, "not judged": 4}
    result.configs.sort(key=lambda c: (order[c.verdict] if not (c.work and c.verdict != "slower") else 1, -c.worst_ratio))
    return result


# --- rendering -------------------------------------------------------------------------------------

def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = 1e3 * seconds
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _change(outcome: Outcome) -> str:
    if not outcome.n_control and not outcome.n_treatment:
        return "no samples"
    if outcome.delta is None:
        return f"{_ms(outcome.control)} -> {_ms(outcome.treatment)}  ({outcome.n_control} vs {outcome.n_treatment} samples)"
    interval = outcome.delta.interval
    return (f"{_ms(outcome.control)} -> {_ms(outcome.treatment)}  {outcome.delta.ratio:.3f} "
            f"[{interval.low:.3f}, {interval.high:.3f}]")


def _why(c: ConfigComparison, rule: ThresholdRule) -> str:
    """The verdict and the measures that made it; * marks one decided by the interval alone (too few
    samples for the rank test to reach its level)."""
    changed = [name + ("" if rule.rank_test_applies(o.n_control, o.n_treatment) else "*")
               for name, o in c.outcomes.items() if o.verdict.outcome == c.verdict]
    return f"{c.verdict} ({', '.join(changed)})" if c.verdict in ("slower", "faster") else c.verdict


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


def _footer(result: Comparison) -> list[str]:
    s = result.summary()
    return [f"rule: {result.rule.statement()}",
            "ratios: NEW/BASE of times (ms per step), above 1 is slower; throughput: time per step of back-to-back "
            "blocks; latency: synchronized single steps; [95% bootstrap interval]; * decided by the interval alone: "
            f"too few samples for the rank test to reach p < {result.rule.alpha:g}, a weaker verdict (docs/compare.md)",
            f"{s['compared']} compared: {s['slower']} slower, {s['faster']} faster, {s['unchanged']} unchanged, "
            f"{s['not judged']} not judged, {s['changed_work']} changed work; {s['only_in_base']} only in BASE, "
            f"{s['only_in_new']} only in NEW, {s['not_measured']} not measured on both: exit {result.status}"]


def _listed(result: Comparison) -> list[tuple[str, list[tuple[str, str]]]]:
    return [("only in BASE", result.only_base), ("only in NEW", result.only_new),
            ("not measured fine on both sides", result.not_measured)]


def render_text(result: Comparison) -> str:
    lines = _header(result) + [""]
    width = max([len(c.label) for c in result.configs] + [13])
    lines.append(f"{'configuration':{width}s}  {'throughput ms/step: BASE -> NEW  ratio [95% CI]':50s}  "
                 f"{'latency ms: BASE -> NEW  ratio [95% CI]':50s}  verdict")
    for c in result.configs:
        lines.append(f"{c.label:{width}s}  {_change(c.throughput):50s}  {_change(c.latency):50s}  {_why(c, result.rule)}")
        lines += [f"{'':{width}s}  changed work: {w.column} {w.base} -> {w.new}" for w in c.work]
    for title, entries in _listed(result):
        if entries:
            lines.append(f"\n{title} ({len(entries)}):")
            lines += [f"  {label}: {why}" for label, why in entries]
    return "\n".join(lines + [""] + _footer(result))


def render_markdown(result: Comparison) -> str:
    lines = [f"**compare** `{result.base.name}` → `{result.new.name}`", ""]
    lines += [f"- {line.strip()}" for line in _header(result)] + [""]
    lines += ["| configuration | throughput ms/step (BASE → NEW) | ratio [95% CI] | latency ms (BASE → NEW) | "
              "ratio [95% CI] | verdict |", "|---|---|---|---|---|---|"]
    for c in result.configs:
        cells = [f"`{c.label}`"]
        for outcome in (c.throughput, c.latency):
            cells.append(f"{_ms(outcome.control)} → {_ms(outcome.treatment)}")
            delta = outcome.delta
            cells.append(f"{delta.ratio:.3f} [{delta.interval.low:.3f}, {delta.interval.high:.3f}]" if delta else
                         f"{outcome.n_control} vs {outcome.n_treatment} samples")
        verdict = f"**{_why(c, result.rule)}**" if c.verdict == "slower" else _why(c, result.rule)
        verdict += "".join(f"; **changed work: {w.column} {w.base} → {w.new}**" for w in c.work)
        lines.append("| " + " | ".join(cells + [verdict]) + " |")
    for title, entries in _listed(result):
        if entries:
            lines += ["", f"{title} ({len(entries)}): " + "; ".join(f"`{label}` ({why})" for label, why in entries)]
    return "\n".join(lines + [""] + [f"*{line}*" for line in _footer(result)]) + "\n"


# --- command line ----------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", metavar="BASE", help="run folder, or run id under --runs-root")
    p.add_argument("new", metavar="NEW", help="run folder, or run id under --runs-root")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="noise threshold: a change counts only when its 95%% interval lies wholly beyond it (default 0.05)")
    p.add_argument("--runs-root", type=Path, default=RUNS_ROOT, help=f"where run ids are looked up (default {RUNS_ROOT})")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="one record per configuration (verdict, ratios, intervals) as JSON, on stdout or to FILE")
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


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as stop:  # argparse: usage errors exit 2, --help 0
        return int(stop.code or 0)
    try:
        require_fraction("--threshold", args.threshold)
        if args.json == "-" and args.markdown == "-":
            raise OptionError("--json and --markdown both asked for stdout. Way out: give one of them a FILE.")
        base = load_run(resolve(args.base, args.runs_root, "BASE"))
        new = load_run(resolve(args.new, args.runs_root, "NEW"))
        result = compare(base, new, ThresholdRule(threshold=args.threshold))
        if not result.configs:
            raise OptionError(
                f"BASE {base.path} and NEW {new.path} have no configuration measured fine in both "
                f"({len(base.rows)} and {len(new.rows)} measured; {len(result.not_measured)} in both but not measured "
                f"fine on a side), so there is nothing to compare. Way out: compare runs of the same profile and "
                f"device (configurations match on model, overrides, input shape, batch, mode, device, dtype, "
                f"channels-last and execution mode).")
    except OptionError as error:
        return report_option_error(error)
    quiet = _emit(args.json, json.dumps(result.record(), indent=1) + "\n")
    quiet |= _emit(args.markdown, render_markdown(result))
    if not quiet:
        print(render_text(result))
    return result.status


if __name__ == "__main__":
    raise SystemExit(main())
