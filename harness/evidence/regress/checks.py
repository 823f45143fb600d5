"""The bookkeeping of the three modes; each returns a ``RegressResult`` (the same shape in every mode) and
prints nothing but progress lines."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.bench.spec import BenchSpec
from harness.evidence import facts
from harness.evidence.regress.baseline import Baseline, choose_baseline, describe_machine, way_out
from harness.evidence.regress.client import Worker, interleaved
from harness.evidence.regress.plan import quick_specs
from harness.evidence.regress.results import ConfigResult, FactChange, NotCompared, RegressResult
from harness.evidence.regress.tree import REPO, worktree
from harness.stats import Change, MemoryRule, Outcome, ReplicateRule, ratio_interval
from harness.store.schema import RESULTS_ROOT

FACTS_SNAPSHOT = RESULTS_ROOT / "regress" / "facts.json"


def _fact_changes(rows: list[dict]) -> list[FactChange]:
    return [FactChange(row["model"], row["metric"], row["before"], row["after"]) for row in rows]


def _pooled_median(parts: list[dict], key: str) -> float | None:
    """Median of the readings under ``key`` over all replicates; None when there is none (missing
    readings are left out, never counted as 0)."""
    values = [value for part in parts for value in part[key] if value is not None]
    return statistics.median(values) if values else None


def combine(spec: BenchSpec, parts: list[dict], min_effect: float, mem_tolerance: float) -> ConfigResult:
    """One configuration's result from its replicates (``client.interleaved`` parts)."""
    change, verdict, per_replicate = ReplicateRule(min_effect).judge([part["ratios"] for part in parts])
    time = Outcome(1e3 * _pooled_median(parts, "old_times"), 1e3 * _pooled_median(parts, "new_times"), change,
                   verdict, n_control=sum(len(p["old_times"]) for p in parts),
                   n_treatment=sum(len(p["new_times"]) for p in parts))
    memory = MemoryRule(mem_tolerance, spec.device).judge(_pooled_median(parts, "old_mem"),
                                                          _pooled_median(parts, "new_mem"))
    return ConfigResult(spec, time, memory, tuple(per_replicate), tuple(tuple(p["ratios"]) for p in parts))


def against_ref(args) -> RegressResult:
    specs = quick_specs(args.names, args.device, args.modes)
    parts: list[list[dict]] = [[] for _ in specs]
    fact_rows = None
    with worktree(args.against) as (tree, commit):
        for replicate in range(1, args.replicates + 1):
            old, new = Worker(tree, args.threads, args.model), Worker(REPO, args.threads, args.model)
            try:
                if fact_rows is None:
                    fact_rows = facts.differences(old.ask(cmd="facts", models=args.names)["facts"],
                                                  new.ask(cmd="facts", models=args.names)["facts"])
                for i, spec in enumerate(specs):
                    part = interleaved(old, new, spec, args.blocks, args.rounds)
                    parts[i].append(part)
                    print(f"[replicate {replicate}/{args.replicates}, {i + 1}/{len(specs)}] {spec.label:45s} "
                          f"x{statistics.median(part['ratios']):.3f}", flush=True)
            finally:
                old.close()
                new.close()
    configs = [combine(spec, spec_parts, args.min_effect, args.mem_tolerance) for spec, spec_parts in zip(specs, parts)]
    not_compared = [NotCompared(f"{c.label} peak memory", c.memory.verdict.detail) for c in configs
                    if c.memory.verdict.outcome == "unknown"]
    return RegressResult("against", f"{args.against}@{commit}", specs, _fact_changes(fact_rows), configs,
                         not_compared, timings_judged=True)


def _time_against(spec: BenchSpec, old: list[float], times: list[float], min_effect: float) -> ConfigResult:
    """This tree's synchronized steps against a committed run's: the ratio of medians new/old with its
    bootstrap interval, judged by the replicate rule with this one comparison as the only replicate."""
    ratio = statistics.median(times) / statistics.median(old)
    change = Change(ratio, ratio_interval(old, times))
    rule = ReplicateRule(min_effect)
    time = Outcome(1e3 * statistics.median(old), 1e3 * statistics.median(times), change,
                   rule.decide(change, [ratio]), n_control=len(old), n_treatment=len(times))
    return ConfigResult(spec, time, replicate_ratios=(ratio,))


def against_baseline(args) -> RegressResult:
    from harness.bench import environment
    from harness.bench.timing import time_step
    from harness.bench.workload import prepare

    specs = quick_specs(args.names, args.device, args.modes)
    keys = [spec.key for spec in specs]
    here = environment.capture(args.device)
    if args.baseline:
        base = Baseline(Path(args.baseline), args.device)
        choice = (f"baseline {base.name} (given with --baseline): it holds {base.holds(keys)} of the "
                  f"{len(keys)} planned configurations")
    else:
        base, choice = choose_baseline(args.runs_root, args.device, keys, here)
        if base is None:
            return RegressResult("baseline", planned=specs, cannot_judge=(
                f"no committed run with {args.device} rows under {args.runs_root}; run `nox -s bench` and "
                f"commit it, or use --against REF"))
    same_machine = base.same_machine(here)
    print(choice, flush=True)  # before the timing, which takes minutes
    held = base.holds(keys)
    result = RegressResult("baseline", base.name, specs, choice=choice, timings_judged=same_machine)
    for spec in specs:
        why = base.why_not(spec.key)
        if why is not None:
            result.not_compared.append(NotCompared(spec.label, f"not in the baseline: {why}"))
            continue
        row = base.rows[spec.key]
        now = facts.variant_facts(spec.model) if spec.mode == "inference" else None
        if now and tuple(now["input_shape"][1:]) == spec.input_shape:
            for metric, current in (("params_total", now["params_total"]), ("params_used", now["params_used"]),
                                    ("gmacs", round(now["macs"] / 1e9, 6))):
                if float(row[metric]) != float(current):
                    result.facts.append(FactChange(spec.model, metric, row[metric], current))
        if not same_machine:
            result.not_compared.append(NotCompared(spec.label, "timing: the baseline is from another machine"))
            continue
        workload = prepare(spec)
        times = time_step(workload.step, warmup=2, rounds=args.replicates * args.blocks * args.rounds)
        config = _time_against(spec, base.samples[spec.key], list(times), args.min_effect)
        result.configs.append(config)
        print(f"[{len(result.configs)}/{held}] {spec.label:45s} x{config.time.delta.ratio:.3f}", flush=True)
    if not same_machine:
        result.notes.append(f"timings not judged: the baseline ran on {describe_machine(base.env)}, this is "
                            f"{describe_machine(here)}")
    result.notes.append("peak memory: not compared against a committed run (--against REF compares it)")
    if not result.configs:
        missing = [spec for spec in specs if base.why_not(spec.key) is not None]
        reason = (f"{base.name} was measured on {describe_machine(base.env)}, not on this machine" if not same_machine
                  else f"none of the {len(specs)} planned configurations is a valid measurement in {base.name}")
        out = way_out(missing if same_machine else specs, args.device, args.models, args.model)
        result.no_timing = (f"compared no timing: {reason}, so this check cannot say whether anything got "
                            f"slower. Way out: {out}.")
    return result


def update_facts(names: list[str]) -> Path:
    """Rewrite the snapshot with these variants' facts; other variants' facts stay as they were."""
    FACTS_SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(FACTS_SNAPSHOT.read_text()) if FACTS_SNAPSHOT.exists() else {}
    FACTS_SNAPSHOT.write_text(json.dumps({**kept, **facts.collect(names)}, indent=1, sort_keys=True) + "\n")
    return FACTS_SNAPSHOT


def deterministic_only(args) -> RegressResult:
    if not FACTS_SNAPSHOT.exists():
        return RegressResult("facts", str(FACTS_SNAPSHOT),
                             cannot_judge=f"no snapshot at {FACTS_SNAPSHOT}; create it with --update-facts")
    before = json.loads(FACTS_SNAPSHOT.read_text())
    now = facts.collect(args.names)
    missing = sorted(set(now) - set(before))
    if missing:
        return RegressResult("facts", str(FACTS_SNAPSHOT), cannot_judge=(
            f"no facts for {', '.join(missing)} in {FACTS_SNAPSHOT}; record them with --update-facts (and the same "
            f"--model/--models) and commit the file"))
    before = {k: v for k, v in before.items() if k in now}
    return RegressResult("facts", str(FACTS_SNAPSHOT), facts=_fact_changes(facts.differences(before, now)),
                         notes=["facts only (--deterministic-only)"])
