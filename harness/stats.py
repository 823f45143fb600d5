"""The statistics of ``regress`` and ``compare``, in one place: medians with bootstrap intervals from raw
samples, ratios of medians with bootstrap intervals, the Mann-Whitney U rank test, and the verdict rules.
Every verdict carries the statement of the rule that produced it.

Pure Python (no torch, no scipy), deterministic: every bootstrap draws from ``random.Random(seed)``.

- A *change* is a ratio treatment/control (NEW/BASE, new/old) of medians of times, with its interval:
  above 1 is slower.
- ``ReplicateRule`` (``regress``): a minimum effect, an interval above 1, and the effect in every
  replicate (fresh pair of processes).
- ``ThresholdRule`` (``compare``): the interval wholly beyond a noise threshold and, where the sample
  sizes let the exact test reach its level, a Mann-Whitney U test agreeing.
"""
from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

LEVEL = 0.95  # the intervals' confidence level
DRAWS = 4000  # bootstrap resamples


def _median(values: Sequence[float]) -> float:
    """statistics.median, without its checks (the bootstraps call it thousands of times)."""
    ordered = sorted(values)
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


# --- intervals -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float = LEVEL

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


def percentile_interval(estimates: Sequence[float], level: float = LEVEL) -> Interval:
    """The central ``level`` of bootstrap estimates (the percentile method)."""
    ordered = sorted(estimates)
    tail = (1 - level) / 2
    return Interval(ordered[round(tail * len(ordered))], ordered[round((1 - tail) * len(ordered)) - 1], level)


def median_interval(values: Sequence[float], draws: int = DRAWS, seed: int = 0, level: float = LEVEL) -> Interval:
    """Bootstrap interval of the median of ``values``: resample them ``draws`` times."""
    rng = random.Random(seed)
    values = list(values)
    return percentile_interval([_median(rng.choices(values, k=len(values))) for _ in range(draws)], level)


def ratio_interval(control: Sequence[float], treatment: Sequence[float], draws: int = DRAWS, seed: int = 0,
                   level: float = LEVEL) -> Interval:
    """Bootstrap interval of median(treatment) / median(control), each side resampled on its own."""
    rng = random.Random(seed)
    control, treatment = list(control), list(treatment)
    n_c, n_t = len(control), len(treatment)
    ratios = [_median(rng.choices(treatment, k=n_t)) / _median(rng.choices(control, k=n_c)) for _ in range(draws)]
    return percentile_interval(ratios, level)


# --- the rank test ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RankTest:
    """Mann-Whitney U of treatment against control, two-sided. ``u``: pairs (treatment, control) in which
    the treatment value is larger, ties counted half; above n_control * n_treatment / 2 the treatment
    tends to be larger."""
    u: float
    p: float
    method: str  # "exact" (no ties, small samples) or "normal" (approximation with tie and continuity corrections)
    n_control: int
    n_treatment: int

    @property
    def treatment_higher(self) -> bool:
        return self.u > self.n_control * self.n_treatment / 2

    @property
    def treatment_lower(self) -> bool:
        return self.u < self.n_control * self.n_treatment / 2


EXACT_MAX_PAIRS = 400  # the exact distribution up to n_control * n_treatment pairs (20 x 20); normal beyond


@lru_cache(maxsize=None)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) orderings of m + n distinct values give each U = 0 .. m*n (U counts the
    pairs in which one of the m values is larger than one of the n)."""
    if m == 0 or n == 0:
        return (1,)
    # The largest value belongs to the m side (it beats all n values) or to the n side (it beats none).
    with_m, with_n = _u_counts(m - 1, n), _u_counts(m, n - 1)
    return tuple((with_m[u - n] if 0 <= u - n < len(with_m) else 0) + (with_n[u] if u < len(with_n) else 0)
                 for u in range(m * n + 1))


def smallest_p(n_control: int, n_treatment: int) -> float:
    """The smallest two-sided p-value the exact test can give: the two samples wholly apart."""
    if not n_control or not n_treatment:
        return 1.0
    return min(1.0, 2 / math.comb(n_control + n_treatment, n_control))


def mann_whitney_u(control: Sequence[float], treatment: Sequence[float], method: str = "auto") -> RankTest:
    """Two-sided Mann-Whitney U test: ``auto`` is exact where no value occurs on both sides and there are
    at most ``EXACT_MAX_PAIRS`` pairs, else the normal approximation (tie-corrected variance, continuity
    correction); ``exact`` or ``normal`` forces one. The values agree with scipy's
    ``mannwhitneyu(treatment, control, method="exact" / "asymptotic")``."""
    if method not in ("auto", "exact", "normal"):
        raise ValueError(f"method is auto, exact or normal, not {method!r}")
    m, n = len(treatment), len(control)
    if not m or not n:
        raise ValueError("the rank test needs at least one value on each side")
    pooled = sorted([(v, 0) for v in control] + [(v, 1) for v in treatment])
    ranks, tie_sizes, i = [0.0] * len(pooled), [], 0
    while i < len(pooled):  # average ranks over ties
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        tie_sizes.append(j - i + 1)
        i = j + 1
    u = sum(rank for rank, (_, side) in zip(ranks, pooled) if side == 1) - m * (m + 1) / 2
    far = max(u, m * n - u)  # the more extreme tail; the distribution is symmetric
    # A tie within one side leaves U as it is (no pair across the sides is tied); one across the sides does not.
    across = set(control) & set(treatment)
    if method == "exact" or (method == "auto" and not across and m * n <= EXACT_MAX_PAIRS):
        counts = _u_counts(m, n)
        p = 2 * sum(counts[math.ceil(far):]) / math.comb(m + n, m)
        return RankTest(u, min(1.0, p), "exact", n, m)
    total = m + n
    variance = m * n / 12 * ((total + 1) - sum(t ** 3 - t for t in tie_sizes) / (total * (total - 1)))
    if variance <= 0:  # every value the same
        return RankTest(u, 1.0, "normal", n, m)
    z = (far - m * n / 2 - 0.5) / math.sqrt(variance)
    return RankTest(u, min(1.0, math.erfc(z / math.sqrt(2))), "normal", n, m)


# --- changes and verdicts --------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    """A ratio treatment/control (above 1: the treatment takes longer, or needs more) and its interval
    (None where the quantity is a single reading on each side)."""
    ratio: float
    interval: Interval | None = None


@dataclass(frozen=True)
class Verdict:
    """``outcome`` (slower, faster, unchanged; heavier, same, unknown; changed; not judged), the statement of
    the rule that produced it, and what decided it in this case."""
    outcome: str
    rule: str
    detail: str = ""


@dataclass(frozen=True)
class Outcome:
    """One compared quantity: control and treatment (medians for timings), the change, the verdict."""
    control: float | None
    treatment: float | None
    delta: Change | None
    verdict: Verdict
    rank: RankTest | None = None
    n_control: int = 0
    n_treatment: int = 0


@dataclass(frozen=True)
class ReplicateRule:
    """``regress``: ratios new/old grouped by replicate (a fresh pair of processes each)."""
    min_effect: float = 0.10

    def statement(self) -> str:
        half = self.min_effect / 2
        return (f"slower when the median ratio new/old is at least {1 + self.min_effect:.3g}, its {LEVEL:.0%} "
                f"bootstrap interval lies above 1, and every replicate's median ratio is at least {1 + half:.3g}; "
                f"faster symmetrically (at most {1 / (1 + self.min_effect):.3g}, interval below 1, every replicate "
                f"at most {1 / (1 + half):.3g}); unchanged otherwise")

    def decide(self, change: Change, per_replicate: Sequence[float]) -> Verdict:
        low, high, estimate, effect = change.interval.low, change.interval.high, change.ratio, self.min_effect
        if low > 1 and estimate >= 1 + effect and min(per_replicate) >= 1 + effect / 2:
            outcome = "slower"
        elif high < 1 and estimate <= 1 / (1 + effect) and max(per_replicate) <= 1 / (1 + effect / 2):
            outcome = "faster"
        else:
            outcome = "unchanged"
        detail = f"replicates {', '.join(f'{r:.3f}' for r in per_replicate)}"
        return Verdict(outcome, self.statement(), detail)

    def judge(self, replicates: Sequence[Sequence[float]]) -> tuple[Change, Verdict, list[float]]:
        """The change and verdict from block ratios, one list per replicate."""
        pooled = [ratio for ratios in replicates for ratio in ratios]
        change = Change(statistics.median(pooled), median_interval(pooled))
        per_replicate = [statistics.median(ratios) for ratios in replicates]
        return change, self.decide(change, per_replicate), per_replicate


@dataclass(frozen=True)
class MemoryRule:
    """``regress --against``: peak memory of the two trees. CPU peak RSS rise varies between processes by
    tens of MB on small inputs; the CUDA allocator's peak is exact. Hence the absolute margins."""
    tolerance: float = 0.10
    device: str = "cpu"

    @property
    def margin_mb(self) -> float:
        return 2 if self.device == "cuda" else 32

    def statement(self) -> str:
        return (f"heavier when the new peak exceeds the old by more than {self.tolerance:.0%} plus "
                f"{self.margin_mb:g} MB; unknown when either side has no reading (never counted as equal)")

    def judge(self, old_mb: float | None, new_mb: float | None) -> Outcome:
        if old_mb is None or new_mb is None:
            sides = [side for side, value in (("old", old_mb), ("new", new_mb)) if value is None]
            verdict = Verdict("unknown", self.statement(), f"no peak-memory reading on the {' and '.join(sides)} side")
            return Outcome(old_mb, new_mb, None, verdict)
        heavier = new_mb > old_mb * (1 + self.tolerance) + self.margin_mb
        ratio = new_mb / max(old_mb, 1e-9)
        return Outcome(old_mb, new_mb, Change(ratio),
                       Verdict("heavier" if heavier else "same", self.statement()))


# Deterministic facts (parameters, MACs, output shapes, dispatched operators): no noise, so no statistics.
FACT_RULE = "facts are compared exactly: any difference is a change"


MIN_SAMPLES = 2  # ThresholdRule judges nothing with fewer samples on either side


@dataclass(frozen=True)
class ThresholdRule:
    """``compare``: raw samples of two runs (times; larger is slower)."""
    threshold: float = 0.05
    alpha: float = 0.01
    level: float = LEVEL
    draws: int = DRAWS

    def statement(self) -> str:
        up, down = 1 + self.threshold, 1 / (1 + self.threshold)
        return (f"slower when the {self.level:.0%} bootstrap interval of the ratio NEW/BASE of median times "
                f"({self.draws} resamples of each side's raw samples) lies wholly above {up:.3g} and, where the "
                f"sample sizes let the exact two-sided Mann-Whitney U test reach p < {self.alpha:g}, that test "
                f"agrees (p < {self.alpha:g}, NEW ranked higher); faster symmetrically (interval wholly below "
                f"{down:.3g}, NEW ranked lower); unchanged otherwise; not judged with fewer than {MIN_SAMPLES} "
                f"samples on a side")

    def rank_test_applies(self, n_control: int, n_treatment: int) -> bool:
        return smallest_p(n_control, n_treatment) < self.alpha

    def judge(self, control: Sequence[float], treatment: Sequence[float], seed: int = 0) -> Outcome:
        n_c, n_t = len(control), len(treatment)
        median_c = statistics.median(control) if control else None
        median_t = statistics.median(treatment) if treatment else None
        if n_c < MIN_SAMPLES or n_t < MIN_SAMPLES:
            verdict = Verdict("not judged", self.statement(), f"{n_c} vs {n_t} samples")
            return Outcome(median_c, median_t, None, verdict, None, n_c, n_t)
        change = Change(median_t / median_c, ratio_interval(control, treatment, self.draws, seed, self.level))
        up, down = 1 + self.threshold, 1 / (1 + self.threshold)
        beyond = "slower" if change.interval.low > up else "faster" if change.interval.high < down else ""
        rank = mann_whitney_u(control, treatment)
        if not self.rank_test_applies(n_c, n_t):
            detail = f"rank test cannot reach p < {self.alpha:g} with {n_c} vs {n_t} samples: interval alone"
            outcome = beyond or "unchanged"
        else:
            agrees = rank.p < self.alpha and (rank.treatment_higher if beyond == "slower" else rank.treatment_lower)
            detail = f"rank test p = {rank.p:.2g} ({rank.method}, {n_c} vs {n_t})"
            outcome = beyond if beyond and agrees else "unchanged"
            if beyond and not agrees:
                detail += ": does not agree, so unchanged"
        if not beyond:
            detail = f"interval within the threshold; {detail}"
        return Outcome(median_c, median_t, change, Verdict(outcome, self.statement(), detail), rank, n_c, n_t)
