"""The statistics of ``regress``, ``compare`` and the report, in one place: medians with bootstrap intervals
from raw samples, ratios of medians with bootstrap intervals, the Mann-Whitney U rank test, between-process
noise, and the verdict rules. Every verdict carries the statement of the rule that produced it.

No torch. The bootstrap is ``scipy.stats.bootstrap`` (percentile method) and the rank test
``scipy.stats.mannwhitneyu``; what is left here is what scipy does not do (one-value samples, the
all-tied rank test, the smallest p-value a sample size allows, the rules). scipy is imported on first use
(``import harness.stats`` stays cheap). Deterministic: every bootstrap draws from
``numpy.random.default_rng(seed)``.

- A *change* is a ratio treatment/control (NEW/BASE, new/old) of medians of times, with its interval:
  above 1 is slower.
- ``ReplicateRule`` (``regress``): a minimum effect, an interval above 1, and the effect in every
  replicate (fresh pair of processes).
- ``ProcessRule`` (``compare``): the process is the unit of noise. Per side, the median of the
  processes' medians; the interval of the ratio from the robust spread of process medians pooled across the
  configurations compared (``between processes``), or, where neither side has more than one process,
  from the device kind's recorded noise floor (``noise floor``); changed only when that interval
  excludes 1 and the ratio is beyond the threshold.
- ``ThresholdRule``: the interval of one process's samples wholly beyond a threshold and a rank test
  agreeing. It cannot see run-to-run variation (docs/compare.md); compare no longer uses it.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
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


def _scipy_stats():
    """scipy.stats, imported on first use (it takes a moment; most commands that import this module never
    need it)."""
    import scipy.stats

    return scipy.stats


def _bootstrap(data: tuple, statistic, draws: int, seed: int, level: float) -> Interval:
    import numpy as np

    result = _scipy_stats().bootstrap(data, statistic, n_resamples=draws, vectorized=True, paired=False,
                                      confidence_level=level, method="percentile",
                                      random_state=np.random.default_rng(seed))
    interval = result.confidence_interval
    return Interval(float(interval.low), float(interval.high), level)


def median_interval(values: Sequence[float], draws: int = DRAWS, seed: int = 0, level: float = LEVEL) -> Interval:
    """Bootstrap interval of the median of ``values`` (``scipy.stats.bootstrap``, percentile method,
    ``draws`` resamples). One value: that value (scipy's bootstrap needs at least two)."""
    import numpy as np

    values = [float(v) for v in values]
    if len(values) < 2:
        if not values:
            raise ValueError("the median of no values")
        return Interval(values[0], values[0], level)
    return _bootstrap((values,), lambda x, axis: np.median(x, axis=axis), draws, seed, level)


def ratio_interval(control: Sequence[float], treatment: Sequence[float], draws: int = DRAWS, seed: int = 0,
                   level: float = LEVEL) -> Interval:
    """Bootstrap interval of median(treatment) / median(control), each side resampled on its own
    (``scipy.stats.bootstrap`` with two unpaired samples, percentile method). A side of one value is held
    fixed (scipy's bootstrap needs at least two a side): the interval is then the other side's."""
    import numpy as np

    control, treatment = [float(v) for v in control], [float(v) for v in treatment]
    if not control or not treatment:
        raise ValueError("a ratio of medians needs at least one value on each side")
    if len(control) < 2 and len(treatment) < 2:
        ratio = treatment[0] / control[0]
        return Interval(ratio, ratio, level)
    if len(control) < 2:
        t = median_interval(treatment, draws, seed, level)
        return Interval(t.low / control[0], t.high / control[0], level)
    if len(treatment) < 2:
        c = median_interval(control, draws, seed, level)
        return Interval(treatment[0] / c.high, treatment[0] / c.low, level)
    return _bootstrap((control, treatment),
                      lambda c, t, axis: np.median(t, axis=axis) / np.median(c, axis=axis), draws, seed, level)


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


def smallest_p(n_control: int, n_treatment: int) -> float:
    """The smallest two-sided p-value the exact test can give: the two samples wholly apart. (Arithmetic,
    not in scipy: whether a sample size can reach a level at all.)"""
    if not n_control or not n_treatment:
        return 1.0
    return min(1.0, 2 / math.comb(n_control + n_treatment, n_control))


def mann_whitney_u(control: Sequence[float], treatment: Sequence[float], method: str = "auto") -> RankTest:
    """Two-sided Mann-Whitney U test, ``scipy.stats.mannwhitneyu(treatment, control)``: ``auto`` is exact
    where no value occurs on both sides and there are at most ``EXACT_MAX_PAIRS`` pairs, else the normal
    approximation (scipy's ``asymptotic``: tie-corrected variance, continuity correction); ``exact`` or
    ``normal`` forces one. The choice is ours, not scipy's ``auto`` (which goes normal from 8 a side): a tie
    within one side leaves U and its exact distribution as they are, only one across the sides does not."""
    if method not in ("auto", "exact", "normal"):
        raise ValueError(f"method is auto, exact or normal, not {method!r}")
    m, n = len(treatment), len(control)
    if not m or not n:
        raise ValueError("the rank test needs at least one value on each side")
    if method == "auto":
        method = "exact" if not set(control) & set(treatment) and m * n <= EXACT_MAX_PAIRS else "normal"
    if len(set(control) | set(treatment)) == 1:
        # Every value the same: no ranking at all, so p = 1 (scipy's normal approximation divides by a zero
        # variance here and returns NaN).
        return RankTest(m * n / 2, 1.0, method, n, m)
    result = _scipy_stats().mannwhitneyu([float(v) for v in treatment], [float(v) for v in control],
                                         alternative="two-sided", use_continuity=True,
                                         method="exact" if method == "exact" else "asymptotic")
    return RankTest(float(result.statistic), min(1.0, float(result.pvalue)), method, n, m)


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


# --- between processes (compare) -------------------------------------------------------------------

# The noise floor of one process, by device kind: the spread of log(a process's median time) between fresh
# processes of the same tree on the same machine, used only where neither run holds more than one process (no
# spread of their own to measure). CPU: the largest robust spread measured in the committed runs of 5 processes
# under results/compare/ (10.0%, the cpu profile's run `a` on a shared 2-core machine), rounded up to the next
# percent; suites/test_compare.py recomputes it from them. CUDA: not measured yet, so the CPU value.
NOISE_FLOOR = {"cpu": 0.11, "cuda": 0.11}
PROCESS_LEVEL = 0.998  # compare: p < 0.002 as asv; many configurations and two measures are judged at once
BETWEEN, FLOOR = "between processes", "noise floor"


@dataclass(frozen=True)
class Noise:
    """The spread of process medians on the log scale: ``sd`` pooled over configurations and sides with
    ``df`` degrees of freedom (``source`` BETWEEN), or the device kind's floor taken as known (``df`` 0,
    ``source`` FLOOR)."""
    sd: float
    df: int
    source: str


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The pooled standard deviation of log values about each group's own mean, and its degrees of
    freedom (the sum of each group's size less one); (0.0, 0) where no group has two values. A group is
    one configuration's process medians on one side. (The one-way ANOVA's within-group variance: scipy has
    the test, not this estimate.)"""
    squares, df = 0.0, 0
    for values in groups:
        logs = [math.log(v) for v in values]
        if len(logs) >= 2:
            mean = sum(logs) / len(logs)
            squares += sum((x - mean) ** 2 for x in logs)
            df += len(logs) - 1
    return (math.sqrt(squares / df), df) if df else (0.0, 0)


# The median of |x - y| for two independent normal values of sd s is s * sqrt(2) * 0.6745 (Phi^-1(3/4)).
_PAIR_MEDIAN = math.sqrt(2) * 0.6744897501960817


def robust_pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The spread of log values within their groups, robust to an odd process out: the median of the absolute
    differences of every pair within a group (over all groups), over its expectation for normal values; with
    the degrees of freedom of ``pooled_sd``. (0.0, 0) where no group has two values. Why not ``pooled_sd``:
    on a shared machine one process in a run can be 25-30% off for its whole life (docs/compare.md), and a
    squared deviation lets that one process widen every configuration's interval."""
    differences, df = [], 0
    for values in groups:
        logs = [math.log(v) for v in values]
        differences += [abs(x - y) for i, x in enumerate(logs) for y in logs[i + 1:]]
        df += max(len(logs) - 1, 0)
    return (_median(differences) / _PAIR_MEDIAN, df) if differences else (0.0, 0)


def median_log(values: Sequence[float]) -> float:
    """The median of the logs of a side's process medians: its centre, robust to one process out of three."""
    return _median([math.log(v) for v in values])


def median_factor(k: int) -> float:
    """How much wider a median of k normal values spreads than their mean: 1 for k <= 2 (the median is the
    mean), else at most sqrt(pi / 2) (the large-k limit; 1.16 at k = 3, 1.20 at k = 5)."""
    return 1.0 if k <= 2 else math.sqrt(math.pi / 2)


def process_medians(processes: Sequence[Sequence[float]]) -> list[float]:
    """Each process's median; processes without samples left out."""
    return [_median(samples) for samples in processes if samples]


@dataclass(frozen=True)
class ProcessRule:
    """``compare``: raw samples of two runs, grouped by process (times; larger is slower)."""
    threshold: float = 0.05
    level: float = PROCESS_LEVEL
    draws: int = DRAWS

    def statement(self, source: str = BETWEEN) -> str:
        up, down = 1 + self.threshold, 1 / (1 + self.threshold)
        how = ("a t-interval on the log ratio whose spread is the robust spread of the processes' medians within "
               "their configuration (from the median difference of every pair), pooled over every configuration "
               "compared and both runs, widened for a median of more than 2 processes (between processes)"
               if source == BETWEEN else
               "a normal interval on the log ratio whose spread is the device kind's noise floor of one "
               f"process's median ({', '.join(f'{k} {v:.1%}' for k, v in NOISE_FLOOR.items())}) on each side "
               "(noise floor: neither run has more than one process)")
        return (f"slower when the {100 * self.level:.3g}% interval of the ratio NEW/BASE of times (each side: the "
                f"median of its processes' medians) lies wholly above 1 and the ratio is at least {up:.3g}; "
                f"faster when the interval lies wholly below 1 and the ratio is at most {down:.3g}; unchanged "
                f"otherwise; not judged with fewer than {MIN_SAMPLES} samples on a side. The interval: {how}")

    def noise(self, groups: Sequence[Sequence[float]], device: str = "cpu") -> Noise:
        """BETWEEN from the groups of process medians where some group has two; else FLOOR for ``device``."""
        sd, df = robust_pooled_sd(groups)
        if df and sd > 0:
            return Noise(sd, df, BETWEEN)
        return Noise(NOISE_FLOOR.get(device, max(NOISE_FLOOR.values())), 0, FLOOR)

    def _half_width(self, noise: Noise, k_c: int, k_t: int) -> tuple[float, float]:
        """(the quantile, the spread) of the log ratio's interval: the spread of each side's centre, a median
        of its process medians (median_factor), from the noise."""
        stats = _scipy_stats()
        tail = (1 + self.level) / 2
        quantile = float(stats.t.ppf(tail, noise.df) if noise.source == BETWEEN else stats.norm.ppf(tail))
        return quantile, noise.sd * math.sqrt(median_factor(k_c) ** 2 / k_c + median_factor(k_t) ** 2 / k_t)

    def resolution(self, noise: Noise, k_c: int, k_t: int) -> float:
        """The smallest slow-down (a ratio) this rule can call with ``k_c`` and ``k_t`` processes a side."""
        quantile, spread = self._half_width(noise, k_c, k_t)
        return max(math.exp(quantile * spread), 1 + self.threshold)

    def judge(self, control: Sequence[Sequence[float]], treatment: Sequence[Sequence[float]], noise: Noise) -> Outcome:
        """``control`` and ``treatment``: one list of samples per process."""
        n_c, n_t = sum(map(len, control)), sum(map(len, treatment))
        base, new = process_medians(control), process_medians(treatment)
        k_c, k_t = len(base), len(new)
        mean_c = math.exp(median_log(base)) if base else None
        mean_t = math.exp(median_log(new)) if new else None
        if n_c < MIN_SAMPLES or n_t < MIN_SAMPLES:
            verdict = Verdict("not judged", self.statement(noise.source), f"{n_c} vs {n_t} samples")
            return Outcome(mean_c, mean_t, None, verdict, None, n_c, n_t)
        log_ratio = math.log(mean_t / mean_c)
        quantile, spread = self._half_width(noise, k_c, k_t)
        if noise.source == BETWEEN:
            detail = (f"{noise.source}: {k_c} vs {k_t} processes, robust pooled sd {noise.sd:.2%} of a process "
                      f"median ({noise.df} df), t = {quantile:.3g}")
        else:
            # The floor is the spread of whole processes' medians, within-process sampling included: nothing
            # is added for the samples (a bootstrap of 5 samples would mostly add its own coarseness).
            detail = f"{noise.source}: {k_c} vs {k_t} processes, floor {noise.sd:.2%} a process, z = {quantile:.3g}"
        change = Change(mean_t / mean_c, Interval(math.exp(log_ratio - quantile * spread),
                                                  math.exp(log_ratio + quantile * spread), self.level))
        up, down = 1 + self.threshold, 1 / (1 + self.threshold)
        if change.interval.low > 1 and change.ratio >= up:
            outcome = "slower"
        elif change.interval.high < 1 and change.ratio <= down:
            outcome = "faster"
        else:
            outcome = "unchanged"
            if change.interval.low > 1 or change.interval.high < 1:
                detail += f"; interval excludes 1 but the ratio is within the {self.threshold:.0%} threshold"
        return Outcome(mean_c, mean_t, change, Verdict(outcome, self.statement(noise.source), detail), None, n_c, n_t)
