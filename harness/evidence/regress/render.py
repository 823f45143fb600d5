"""The terminal table of a ``RegressResult``: rendering only (every number and verdict is already there)."""
from __future__ import annotations

import json

from harness.evidence.regress.results import RegressResult


def _short(value) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mb(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(result: RegressResult) -> str:
    if result.cannot_judge:
        return f"cannot judge: {result.cannot_judge}"
    lines = list(result.notes)
    if result.facts or result.configs:
        lines.append(f"\n{'metric':48s} {'before':>14s} {'after':>14s} {'ratio':>7s}  verdict")
    for fact in result.facts:
        lines.append(f"{fact.model + ' ' + fact.metric:48s} {_short(fact.before):>14s} {_short(fact.after):>14s} "
                     f"{'':>7s}  CHANGED")
    for config in result.configs:
        time, interval = config.time, config.time.delta.interval
        lines.append(f"{config.label + ' time (ms)':48s} {time.control:14.1f} {time.treatment:14.1f} "
                     f"{time.delta.ratio:7.3f}  {time.verdict.outcome} (95% CI {interval.low:.3f}-{interval.high:.3f})")
        memory = config.memory
        if memory is not None:
            known = memory.verdict.outcome != "unknown"
            ratio = f"{memory.delta.ratio:7.3f}" if known else f"{'':>7s}"
            verdict = memory.verdict.outcome if known else f"unknown ({memory.verdict.detail})"
            lines.append(f"{config.label + ' peak (MB)':48s} {_mb(memory.control):>14s} {_mb(memory.treatment):>14s} "
                         f"{ratio}  {verdict}")
    if result.configs:
        lines.append(f"rule: {result.configs[0].time.verdict.rule}")
        if result.memory_judged:
            lines.append(f"peak memory: {result.configs[0].memory.verdict.rule}")
    if result.not_compared:
        lines.append(f"\nnot compared ({len(result.not_compared)}):")
        lines += [f"  {row.subject:46s} {row.reason}" for row in result.not_compared]
    if result.no_timing:
        lines.append(f"\ncannot judge: {result.no_timing}")
    regressions = result.regressions
    verdict = "REGRESSION" if regressions else "CANNOT JUDGE (see above)" if result.incomplete else "no regression"
    counts = [f"{len(result.facts)} changed facts", f"{len(result.slower)} slower"]
    if result.memory_judged:  # memory only where it is measured (--against)
        counts += [f"{len(result.heavier)} heavier", f"{len(result.memory_unknown)} memory unknown"]
    planned = len(result.planned)
    compared = f"{len(result.configs)}" + (f" of {planned} planned" if planned else "")
    lines.append(f"\n{', '.join(counts)}, {compared} timings compared: {verdict}")
    return "\n".join(lines)


def print_report(result: RegressResult) -> int:
    """Print the table; returns the exit status (``RegressResult.status``)."""
    print(render(result))
    return result.status
