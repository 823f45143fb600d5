"""``harness compare`` between runs, the statistics it shares with ``regress``, and the report's intervals.

Runs are built in tmp_path from a committed CPU run's raw samples (no measuring): resampled from each
configuration's own samples (must be all unchanged), a chosen set scaled by 1.25 (slower exactly there),
1.03 everywhere (unchanged at the default 5% threshold), a changed MAC count (changed work, exit 1)."""
import csv
import itertools
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.bench.spec import BenchSpec
from harness.evidence import compare as cmp
from harness import stats
from harness.report import plots, tables
from harness.report.__main__ import comparison_markdown, raw_samples
from harness.store.csvfile import read_rows

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "results" / "runs" / "20261126T041234Z-cpu-cpu"  # 2 throughput blocks, 5 latencies per row
OTHER = REPO / "results" / "runs" / "20261126T042719Z-cpu-peers"  # the same machine; 24 configurations in common


# --- runs built from the committed run's raw samples -----------------------------------------------

def _rewrite(name, tmp_path, samples=None, rows=None, environment=None, source=COMMITTED) -> Path:
    """A copy of ``source`` whose details lines pass through ``samples(spec, record)`` (change the lists in
    place), whose CSV rows pass through ``rows(row)`` (return None to drop one), and whose environment is
    updated with ``environment``."""
    run = tmp_path / name
    shutil.copytree(source, run)
    if samples:
        lines = [json.loads(line) for line in (run / "details.jsonl").read_text().splitlines()]
        for record in lines:
            samples(BenchSpec.from_record(record["spec"]), record)
        (run / "details.jsonl").write_text("".join(json.dumps(record) + "\n" for record in lines))
    if rows:
        contents = read_rows(run / "results.csv")
        kept = [r for r in (rows(dict(row)) for row in contents.rows) if r is not None]
        with (run / "results.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=contents.header)
            writer.writeheader()
            writer.writerows(kept)
    if environment:
        record = json.loads((run / "environment.json").read_text())
        record["environment"].update(environment)
        (run / "environment.json").write_text(json.dumps(record))
    return run


def _scale(factor, which=lambda spec: True):
    def scale(spec, record):
        if which(spec):
            record["latency_s"] = [t * factor for t in record.get("latency_s", [])]
            record["block_s"] = [t * factor for t in record.get("block_s", [])]
    return scale


def _unet3d_only(row):  # fewer configurations in common: a faster test where the number does not matter
    return row if row["model"] == "unet3d" else None


def _compare(tmp_path, capsys, base, new, *options):
    out = tmp_path / "compare.json"
    status = cmp.main([str(base), str(new), "--json", str(out), *options])
    return status, capsys.readouterr(), json.loads(out.read_text())


def _verdicts(record) -> dict[str, str]:
    return {c["config"]: c["verdict"] for c in record["configurations"]}


def _measured_specs() -> list[BenchSpec]:
    return [BenchSpec.from_record(json.loads(line)["spec"]) for line in (COMMITTED / "details.jsonl").read_text().splitlines()
            if json.loads(line)["block_s"]]


@pytest.mark.parametrize("seed", [1, 2])
def test_samples_resampled_from_their_own_configuration_are_all_unchanged(tmp_path, capsys, seed):
    rng = random.Random(seed)

    def resample(spec, record):
        for field in ("latency_s", "block_s"):
            record[field] = rng.choices(record[field], k=len(record[field])) if record.get(field) else record.get(field)

    new = _rewrite("resampled", tmp_path, resample)
    status, out, record = _compare(tmp_path, capsys, COMMITTED, new)
    verdicts = _verdicts(record)
    assert len(verdicts) == len(_measured_specs()) == 58
    assert set(verdicts.values()) == {"unchanged"} and status == cmp.EXIT_OK


def test_a_chosen_set_scaled_by_1_25_is_slower_exactly_there(tmp_path, capsys):
    chosen = {spec.label for spec in _measured_specs()[::6]}  # ten configurations, 2D and 3D, both modes
    new = _rewrite("slower", tmp_path, _scale(1.25, lambda spec: spec.label in chosen))
    status, out, record = _compare(tmp_path, capsys, COMMITTED, new)
    verdicts = _verdicts(record)
    assert {label for label, verdict in verdicts.items() if verdict == "slower"} == chosen
    assert set(verdicts.values()) == {"slower", "unchanged"} and status == cmp.EXIT_CHANGED
    slower = [c for c in record["configurations"] if c["verdict"] == "slower"]
    assert [c["config"] for c in record["configurations"][:len(chosen)]] == [c["config"] for c in slower]  # worst first
    for c in slower:
        assert c["throughput"]["ratio"] == pytest.approx(1.25) and c["throughput"]["ci_low"] > 1.05
        assert c["rule"].startswith("slower when the 95% bootstrap interval of the ratio NEW/BASE")


def test_three_percent_everywhere_is_unchanged_at_the_default_threshold(tmp_path, capsys):
    new = _rewrite("three-percent", tmp_path, _scale(1.03))
    status, _, record = _compare(tmp_path, capsys, COMMITTED, new)
    assert set(_verdicts(record).values()) == {"unchanged"} and status == cmp.EXIT_OK
    assert all(c["latency"]["ratio"] == pytest.approx(1.03) for c in record["configurations"])
    # The threshold is what keeps a steady 3% out: at 1% the tightest configurations are called slower.
    status, _, record = _compare(tmp_path, capsys, COMMITTED, new, "--threshold", "0.01")
    assert "slower" in _verdicts(record).values() and status == cmp.EXIT_CHANGED


def test_a_changed_mac_count_is_changed_work_and_exits_1(tmp_path, capsys):
    target = ("unet3d", "1x32x32x32", "2", "train")

    def heavier(row):
        if (row["model"], row["input_shape"], row["batch"], row["mode"]) == target:
            row["gmacs"] = f"{float(row['gmacs']) * 1.5:.6f}"
        return row

    new = _rewrite("more-work", tmp_path, rows=heavier)
    status, captured, record = _compare(tmp_path, capsys, COMMITTED, new)
    assert status == cmp.EXIT_CHANGED
    changed = [c for c in record["configurations"] if c["work_changed"]]
    assert [c["config"] for c in changed] == ["unet3d-1x32x32x32-b2-train-cpu-fp32"]
    assert changed[0]["work_changed"][0]["column"] == "gmacs" and changed[0]["verdict"] == "unchanged"
    assert record["configurations"][0]["config"] == changed[0]["config"]  # listed before the unchanged
    base_gmacs = next(r["gmacs"] for r in read_rows(COMMITTED / "results.csv").rows
                      if (r["model"], r["input_shape"], r["batch"], r["mode"]) == target)
    assert f"changed work: gmacs {base_gmacs} -> {float(base_gmacs) * 1.5:.6f}" in captured.out
    assert record["summary"]["changed_work"] == 1


def test_configurations_on_one_side_only_are_listed(tmp_path, capsys):
    def fewer(row):
        if row["model"] == "unet2d":
            return None  # gone from NEW
        if row["model"] == "unet2d-transposed" and row["mode"] == "train":
            row["error"] = "RuntimeError: boom"  # in both, but not a measurement in NEW
        return row

    new = _rewrite("fewer", tmp_path, rows=fewer)
    status, captured, record = _compare(tmp_path, capsys, COMMITTED, new)
    assert len(record["only_in_base"]) == 8 and record["only_in_new"] == []
    boom = {entry["config"] for entry in record["not_measured"] if "boom" in entry["reason"]}
    assert boom == {f"unet2d-transposed-1x{s}x{s}-b{b}-train-cpu-fp32" for s in (64, 128) for b in (1, 2)}
    # and the 6 configurations the envelope refuses (training at batch 1, 16³) on both sides
    assert len(record["not_measured"]) == 10 and "not measured fine on both sides (10):" in captured.out
    assert "only in BASE (8):" in captured.out
    assert "NEW: error 'RuntimeError: boom'" in captured.out and status == cmp.EXIT_OK


def test_the_machines_differences_are_printed_above_the_table(tmp_path, capsys):
    new = _rewrite("elsewhere", tmp_path, rows=_unet3d_only, environment={"torch": "2.14.0+cpu", "cpu": "Other CPU",
                                                                           "device_name": "Other CPU"})
    status, captured, record = _compare(tmp_path, capsys, COMMITTED, new)
    out = captured.out
    table = out.index("configuration ")
    assert out.index("machines: DIFFERENT") < table and out.index("torch: '2.13.0+cpu' vs '2.14.0+cpu'") < table
    assert out.index("cpu: 'Intel(R) Xeon(R) Processor' vs 'Other CPU'") < table
    assert record["machines"] == {"same": False, "differences": [
        "device_name: 'Intel(R) Xeon(R) Processor' vs 'Other CPU'", "cpu: 'Intel(R) Xeon(R) Processor' vs 'Other CPU'",
        "torch: '2.13.0+cpu' vs '2.14.0+cpu'"]}
    same = _rewrite("same", tmp_path, rows=_unet3d_only)
    _, captured, record = _compare(tmp_path, capsys, COMMITTED, same)
    assert record["machines"] == {"same": True, "differences": []} and "machines: the same" in captured.out


def test_json_and_markdown(tmp_path, capsys):
    new = _rewrite("slower", tmp_path, _scale(1.25, lambda spec: spec.model == "unet3d"), rows=_unet3d_only)
    assert cmp.main([str(COMMITTED), str(new), "--json"]) == cmp.EXIT_CHANGED
    record = json.loads(capsys.readouterr().out)  # --json alone: JSON only on stdout
    first = record["configurations"][0]
    assert set(first) >= {"config", "key", "verdict", "rule", "throughput", "latency", "work_changed"}
    assert set(first["throughput"]) >= {"base_ms", "new_ms", "ratio", "ci_low", "ci_high", "rank_test", "verdict"}
    assert record["exit_status"] == 1 and record["threshold"] == 0.05
    assert cmp.main([str(COMMITTED), str(new), "--markdown"]) == cmp.EXIT_CHANGED
    markdown = capsys.readouterr().out
    assert "| configuration | throughput ms/step (BASE → NEW) |" in markdown
    assert "**slower (throughput*" in markdown and "*rule: slower when" in markdown


def test_python_m_harness_compare_on_two_committed_cpu_runs(capsys):
    from harness.cli import main

    status = main(["compare", COMMITTED.name, OTHER.name])  # run ids under results/runs
    out = capsys.readouterr().out
    assert status in (cmp.EXIT_OK, cmp.EXIT_CHANGED)
    assert out.startswith(f"BASE {COMMITTED.relative_to(REPO)}") and "machines: the same" in out
    assert "unet3d-1x32x32x32-b2-train-cpu-fp32" in out and "only in BASE (40):" in out and "only in NEW (20):" in out
    assert "24 compared:" in out


@pytest.mark.parametrize("argv, says", [
    (["results/runs/nosuch", COMMITTED.name], "BASE 'results/runs/nosuch': no run there"),
    ([COMMITTED.name, "nosuch"], "NEW 'nosuch': no run there"),
    ([COMMITTED.name, COMMITTED.name, "--threshold", "-1"], "--threshold must lie between 0 and 10"),
    ([COMMITTED.name, COMMITTED.name, "--json", "--markdown"], "both asked for stdout"),
])
def test_bad_arguments_exit_2_with_one_paragraph(argv, says, capsys):
    assert cmp.main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.startswith("error: ") and err.count("\n") == 1 and "Way out" in err


def test_no_configuration_in_common_exits_2(tmp_path, capsys):
    renamed = _rewrite("renamed", tmp_path, lambda spec, record: record["spec"].update(model="other-" + spec.model),
                       rows=lambda row: {**row, "model": "other-" + row["model"]})
    assert cmp.main([str(COMMITTED), str(renamed)]) == 2
    err = capsys.readouterr().err
    assert "no configuration measured fine in both" in err and err.count("\n") == 1


def test_usage_errors_exit_2():
    assert cmp.main([COMMITTED.name]) == 2
    assert cmp.main([COMMITTED.name, OTHER.name, "--no-such-option"]) == 2


def test_compare_needs_no_torch(tmp_path):
    blocker = tmp_path / "torch.py"
    blocker.write_text("raise ImportError('torch is not installed here (blocked by the test)')\n")
    code = ("import sys\nfrom harness.evidence.compare import main\n"
            f"status = main([{str(COMMITTED)!r}, {str(OTHER)!r}, '--json', {str(tmp_path / 'out.json')!r}])\n"
            "assert 'torch' not in sys.modules or sys.modules['torch'] is None\nprint('status', status)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and "status " in done.stdout, done.stderr


# --- the statistics (harness.stats) -------------------------------------------------------

# scipy 1.17.1: mannwhitneyu(treatment, control, alternative="two-sided", method=...); .statistic, .pvalue
SCIPY = [
    ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], "exact", 25.0, 0.007936507936507936),
    ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], "normal", 25.0, 0.012185780355344813),
    ([1.1, 2.3, 3.2, 4.8, 5.0], [2.0, 3.5, 4.1, 6.2, 7.7], "exact", 17.0, 0.42063492063492064),
    ([1.1, 2.3, 3.2, 4.8, 5.0], [2.0, 3.5, 4.1, 6.2, 7.7], "normal", 17.0, 0.4033953048926283),
    ([1, 2], [3, 4], "exact", 4.0, 0.3333333333333333),
    ([1, 2, 3, 4, 6], [5, 7, 8, 9, 10], "exact", 24.0, 0.015873015873015872),
    ([1, 2, 2, 3, 4], [2, 3, 3, 5, 6, 6], "normal", 24.0, 0.1130499788563229),  # ties: tie-corrected variance
    ([0.5 * i % 7 + i * 0.01 for i in range(30)], [0.5 * i % 5 + 1 + i * 0.013 for i in range(25)], "normal",
     373.0, 0.9797721013577294),
    ([1, 1, 1], [1, 1, 1], "normal", 4.5, 1.0),
]


@pytest.mark.parametrize("control, treatment, method, u, p", SCIPY)
def test_mann_whitney_u_agrees_with_scipy(control, treatment, method, u, p):
    result = stats.mann_whitney_u(control, treatment, method)
    assert result.u == u and result.p == pytest.approx(p, rel=1e-9)


def test_auto_chooses_exact_without_ties_on_small_samples_and_normal_otherwise():
    assert stats.mann_whitney_u([1, 2, 3], [4, 5, 6]).method == "exact"
    assert stats.mann_whitney_u([1, 1, 3], [4, 5, 5]).method == "exact"  # ties within a side leave U as it is
    assert stats.mann_whitney_u([1, 2, 2], [2, 5, 6]).method == "normal"  # a tie across the sides
    assert stats.mann_whitney_u(list(range(21)), [x + 0.5 for x in range(20)]).method == "normal"  # 420 pairs


def test_the_exact_distribution_matches_enumeration():
    for m, n in ((2, 3), (4, 4), (3, 6)):
        counts = [0] * (m * n + 1)
        for chosen in itertools.combinations(range(m + n), m):  # positions of the m values among m + n ranks
            others = [i for i in range(m + n) if i not in chosen]
            counts[sum(a > b for a in chosen for b in others)] += 1
        assert list(stats._u_counts(m, n)) == counts
    assert stats.smallest_p(5, 5) == pytest.approx(2 / 252) and stats.smallest_p(2, 2) == pytest.approx(1 / 3)


def test_bootstrap_intervals_are_deterministic_and_hold_the_estimate():
    values = [0.031, 0.0313, 0.0304, 0.0369, 0.0313]
    interval = stats.median_interval(values)
    assert interval == stats.median_interval(values) and interval.low <= 0.0313 <= interval.high
    ratio = stats.ratio_interval(values, [v * 1.25 for v in values])
    assert ratio.low < 1.25 < ratio.high and ratio == stats.ratio_interval(values, [v * 1.25 for v in values])
    assert tables.median_interval is stats.median_interval  # one statistics module, for the report too


def test_the_rank_test_must_agree_where_it_can_reach_its_level():
    rule = stats.ThresholdRule()
    apart = rule.judge([1.0, 1.01, 1.02, 0.99, 1.0], [1.3, 1.31, 1.29, 1.3, 1.32])
    assert apart.verdict.outcome == "slower" and "rank test p = 0.0079 (exact, 5 vs 5)" in apart.verdict.detail
    # Medians 30% apart, but a fifth of each side far out the other way: the interval of the medians clears
    # 5%, the rank test (p = 0.13) does not agree, so unchanged.
    old = [1.0 + 0.001 * i for i in range(16)] + [2.0 + 0.01 * i for i in range(4)]
    new = [1.3 + 0.001 * i for i in range(16)] + [0.5 + 0.01 * i for i in range(4)]
    overlap = rule.judge(old, new)
    assert overlap.delta.interval.low > 1.05 and overlap.verdict.outcome == "unchanged"
    assert "rank test p = 0.13 (exact, 20 vs 20): does not agree" in overlap.verdict.detail
    # Two samples a side cannot reach p < 0.01: the interval alone decides, and says so.
    two = rule.judge([1.0, 1.01], [1.3, 1.31])
    assert two.verdict.outcome == "slower" and "interval alone" in two.verdict.detail
    assert rule.judge([1.0], [2.0]).verdict.outcome == "not judged"
    assert rule.judge([1.0, 1.01, 1.02, 0.99, 1.0], [0.7, 0.71, 0.69, 0.7, 0.72]).verdict.outcome == "faster"


def test_the_false_alarm_rate_of_the_rule_at_five_samples():
    """Same distribution on both sides, noise far above the threshold (20% spread): the rank test bounds
    the false alarms at P(samples wholly apart) = 2/252 per measure."""
    rule, rng, trials = stats.ThresholdRule(draws=500), random.Random(3), 300
    alarms = sum(rule.judge([math.exp(rng.gauss(0, 0.2)) for _ in range(5)],
                            [math.exp(rng.gauss(0, 0.2)) for _ in range(5)]).verdict.outcome != "unchanged"
                 for _ in range(trials))
    assert alarms <= 6  # expected at most 2.4 (0.79%)


# --- intervals in the report -----------------------------------------------------------------------

def test_the_report_gives_intervals_where_the_samples_allow_and_draws_error_bars(tmp_path, monkeypatch):
    def five_blocks(spec, record):  # as the cpu profile now keeps: 5 throughput blocks, about the same median
        if record.get("block_s"):
            middle = sum(record["block_s"]) / 2
            record["block_s"] = [middle * factor for factor in (0.99, 0.995, 1.0, 1.005, 1.01)]

    run = _rewrite("five-blocks", tmp_path, five_blocks)
    samples = raw_samples([run])
    assert len(samples) == 58 and all(len(s["step_s"]) == 5 and len(s["latency_s"]) == 5 for s in samples.values())
    results = tables.with_intervals(*_loaded(run))
    table = tables.comparison(results)
    markdown = comparison_markdown(table)
    assert "Inference (samples/s) [95% CI]" in markdown and "Train step latency, ms [95% CI]" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| unet3d "))
    assert row.count("[") == 4  # throughput and latency, inference and training
    assert {"inference_samples_per_s_low", "train_latency_high_ms"} <= set(table.columns)  # comparison.csv has them
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, stem: figures.append(fig) or [])
    title, _, group = next(tables.groups(table))
    plots.comparison_figure(group, plots.colours(list(group["model"])), title, tmp_path / "figure")
    plots.scaling_figure(results, plots.colours(list(results["model"].unique())), title, tmp_path / "scaling")
    bars, scaling = figures[0].axes[0], figures[1].axes[0]
    assert len(bars.collections) == 1 and len(bars.collections[0].get_segments()) == len(group)  # one bar each
    assert "bars: 95% interval" in bars.get_xlabel() and "bars: 95% interval" in scaling.get_ylabel()
    assert len(scaling.collections) == results[results["mode"] == "inference"]["model"].nunique()  # one per line
    # The committed run keeps 2 blocks: latency intervals only (5 rounds), throughput without one.
    table = tables.comparison(tables.with_intervals(*_loaded(COMMITTED)))
    assert table["inference_latency_low_ms"].notna().all() and table["inference_samples_per_s_low"].isna().all()


def _loaded(run):
    from harness.report.load import load_results

    return load_results([run]), raw_samples([run])


def test_error_bars_span_the_interval():
    import pandas as pd

    from harness.report.plots import error_bars

    has, (below, above) = error_bars(pd.Series([10.0, 20.0]), pd.Series([9.0, float("nan")]),
                                     pd.Series([12.0, float("nan")]))
    assert has == [True, False] and below == [1.0] and above == [2.0]
