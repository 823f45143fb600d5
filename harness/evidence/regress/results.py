"""What a regression check found, typed and the same shape in every mode (facts only, against a
committed run, against a git ref): per configuration the control (old), the treatment (new), the delta
and the verdict, each verdict with the rule that produced it; per variant the facts that changed; what
was planned but not compared, and why. Bookkeeping only: ``render`` prints it, ``record`` is its JSON.
No torch."""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.bench.spec import BenchSpec
from harness.stats import FACT_RULE, Outcome, Verdict

EXIT_OK, EXIT_REGRESSION, EXIT_CANNOT_JUDGE = 0, 1, 3


@dataclass(frozen=True)
class FactChange:
    """A deterministic fact of a variant that differs: compared exactly, so every difference is a change."""
    model: str
    metric: str
    before: object
    after: object

    @property
    def verdict(self) -> Verdict:
        return Verdict("changed", FACT_RULE)


@dataclass(frozen=True)
class ConfigResult:
    """One planned configuration, compared: the step time (ms; control = old, treatment = new) and, where
    both sides were measured the same way (``--against``), the peak memory (MB)."""
    spec: BenchSpec
    time: Outcome
    memory: Outcome | None = None
    replicate_ratios: tuple[float, ...] = ()
    block_ratios: tuple[tuple[float, ...], ...] = ()

    @property
    def label(self) -> str:
        return self.spec.label


@dataclass(frozen=True)
class NotCompared:
    subject: str  # a configuration's label, or "<label> peak memory"
    reason: str


@dataclass
class RegressResult:
    mode: str  # "facts", "baseline" or "against"
    reference: str = ""  # the facts snapshot, the baseline run, or REF@commit
    planned: list[BenchSpec] = field(default_factory=list)
    facts: list[FactChange] = field(default_factory=list)
    configs: list[ConfigResult] = field(default_factory=list)
    not_compared: list[NotCompared] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings_judged: bool = False
    choice: str = ""  # how the baseline was chosen (baseline mode)
    cannot_judge: str = ""  # nothing at all could be compared (no baseline, no snapshot), and why
    no_timing: str = ""  # timings were planned but none compared, why, and the way out

    @property
    def slower(self) -> list[ConfigResult]:
        return [c for c in self.configs if c.time.verdict.outcome == "slower"]

    @property
    def heavier(self) -> list[ConfigResult]:
        return [c for c in self.configs if c.memory and c.memory.verdict.outcome == "heavier"]

    @property
    def memory_judged(self) -> bool:
        """Peak memory is compared only where both sides are measured the same way (``--against``)."""
        return any(c.memory is not None for c in self.configs)

    @property
    def memory_unknown(self) -> list[ConfigResult]:
        return [c for c in self.configs if c.memory and c.memory.verdict.outcome == "unknown"]

    @property
    def regressions(self) -> int:
        return len(self.facts) + len(self.slower) + len(self.heavier)

    @property
    def incomplete(self) -> bool:
        """A planned comparison did not happen."""
        return bool(self.cannot_judge or self.not_compared or (self.planned and not self.configs))

    @property
    def status(self) -> int:
        """1 when anything regressed (even with comparisons missing), else 3 when a planned comparison did
        not happen, else 0."""
        if self.cannot_judge:
            return EXIT_CANNOT_JUDGE
        return EXIT_REGRESSION if self.regressions else EXIT_CANNOT_JUDGE if self.incomplete else EXIT_OK

    def record(self) -> dict:
        """The JSON form (``results/regress/latest.json``). Per configuration the old/new names of the
        earlier flat records are kept (``config``, ``old_ms``, ``new_ms``, ``ratio``, ``ci_low``, ``ci_high``,
        ``verdict``), with the rule beside each verdict."""
        return {"mode": self.mode, "reference": self.reference, "choice": self.choice,
                "planned": [spec.label for spec in self.planned],
                "facts": [{"model": f.model, "metric": f.metric, "before": f.before, "after": f.after,
                           "verdict": f.verdict.outcome, "rule": f.verdict.rule} for f in self.facts],
                "timings": [_config_record(c) for c in self.configs], "timings_judged": self.timings_judged,
                "not_compared": [{"config": n.subject, "reason": n.reason} for n in self.not_compared],
                "note": "\n".join(self.notes), "cannot_judge": self.cannot_judge, "no_timing": self.no_timing,
                "exit_status": self.status}


def _config_record(c: ConfigResult) -> dict:
    time = c.time
    interval = time.delta.interval
    out = {"config": c.label, "spec": c.spec.record(), "old_ms": time.control, "new_ms": time.treatment,
           "ratio": time.delta.ratio, "ci_low": interval.low, "ci_high": interval.high,
           "verdict": time.verdict.outcome, "rule": time.verdict.rule, "detail": time.verdict.detail,
           "replicate_ratios": list(c.replicate_ratios), "block_ratios": [list(r) for r in c.block_ratios]}
    if c.memory is not None:
        out.update(old_peak_mb=c.memory.control, new_peak_mb=c.memory.treatment,
                   memory_verdict=c.memory.verdict.outcome, memory_rule=c.memory.verdict.rule)
        if c.memory.verdict.detail:
            out["memory_note"] = c.memory.verdict.detail
    return out
