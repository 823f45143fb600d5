"""``python -m harness.evidence.regress``: did the reference models get slower or heavier?

Deterministic facts (parameters, used parameters, MACs by operator, output shapes, the aten operators
a forward pass dispatches) are compared exactly. Timings and peak memory are compared statistically:

- ``--against REF``: REF is checked out in a temporary git worktree; the *current* harness code is
  copied into it, so both sides are measured the same way and differ only in ``reference_models``.
  One worker process per tree; for each configuration the two are timed in alternating blocks
  (AB, BA, AB, ...) on the same machine, so drift hits both. Each block gives a ratio
  min(new)/min(old) of its rounds (noise only adds time). The whole sweep is repeated with
  ``--replicates`` fresh pairs of processes, one after the other, because a process can be a few
  percent (rarely 20%) slower than its twin for its whole life (memory placement, which core it
  lands on), and no number of blocks inside one pair averages that away. The verdict: *slower* when the median of all block ratios
  exceeds 1 + ``--min-effect``, its bootstrap 95% interval lies above 1, and every replicate on its
  own shows at least half the minimum effect (a real slowdown of the code shows in every pair of
  processes; a placement artefact in one); *faster* symmetrically; *unchanged* otherwise.
- without ``--against``: against a committed run (``--baseline RUN``). Without ``--baseline`` the run is
  chosen by what this check needs, not by name: among the runs under ``--runs-root`` (default
  ``results/runs/``) with rows for this device, those whose machine fingerprint (device, CPU, threads,
  torch, CUDA, cuDNN) matches this machine's, the one holding the most of the planned configurations
  (ties: the newest); it says which and why. A configuration counts only as a valid measurement: fp32,
  eager, not channels-last, no ``--set`` overrides, ``schema.measured_fine`` (no error, warm) and its
  timing samples in ``details.jsonl``. Facts are checked exactly; timings only when the fingerprint
  matches, otherwise it says it cannot judge them. Peak memory is not compared in this mode (only
  ``--against`` measures both sides the same way).
- ``--deterministic-only``: facts only, against the committed snapshot ``results/regress/facts.json``
  (``--update-facts`` rewrites it). Cheap: this is what ``.ci/run`` runs.

The planned configurations are ``quick_specs``: each chosen variant at its fact shape (3D) or 64² (2D),
inference at batch 1 and a training step at batch 2 (``--modes``). Whatever planned comparison did not
happen is named with its reason: a configuration the baseline lacks (or holds only as an error or
not-warm row), timings of a baseline from another machine, a peak memory without a reading on either
side (``unknown``, never compared as equal).

Exit status: 1 when anything regressed (a changed fact, a slower timing, a heavier peak), even if other
comparisons were missing; otherwise 3 ("cannot judge") when any planned comparison did not happen,
with the reason (in particular when no timing at all was compared); 0 only when everything planned
was compared and nothing regressed. ``--deterministic-only`` plans no timing: 0 or 1 on its facts, 3 when
the snapshot lacks a variant.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from harness.bench import environment
from harness.evidence import facts
from harness.evidence.facts import fact_shape
from harness.bench.profiles import select_models
from harness.catalog.registry import get_variant, require_models
from harness.catalog.user import register_reference
from harness.options import OptionError, require_device, require_fraction, require_positive
from harness.options import report as report_option_error
from harness.store.csvfile import read_rows
from harness.store.schema import RESULTS_ROOT, RUNS_ROOT, exec_mode_of, measured_fine

REPO = Path(__file__).resolve().parents[2]
FACTS_SNAPSHOT = RESULTS_ROOT / "regress" / "facts.json"
OUT = RESULTS_ROOT / "regress" / "latest.json"
EXIT_OK, EXIT_REGRESSION, EXIT_CANNOT_JUDGE = 0, 1, 3


def quick_specs(names: list[str], device: str, modes=("inference", "train")) -> list[dict]:
    """Small configurations: every chosen variant, inference (batch 1) and a training step (batch 2)."""
    specs = []
    for name in names:
        variant = get_variant(name)
        size = fact_shape(name)[2:] if variant.spatial_dims == 3 else (64,) * 2
        for mode, batch in (("inference", 1), ("train", 2)):
            if mode not in modes:
                continue
            specs.append({"model": name, "input_shape": [variant.example_input[1], *size], "batch": batch,
                          "mode": mode, "device": device, "cudnn_benchmark": device == "cuda"})
    return specs


def label(spec: dict) -> str:
    return f"{spec['model']}-{'x'.join(map(str, spec['input_shape']))}-b{spec['batch']}-{spec['mode']}"


# --- statistics ------------------------------------------------------------------------------------

def bootstrap_interval(values: list[float], draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the median, resampling ``values``."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def judge(replicates: list[list[float]], min_effect: float) -> dict:
    """Verdict on block ratios new/old, grouped by replicate (one list per pair of processes)."""
    pooled = [ratio for ratios in replicates for ratio in ratios]
    estimate = statistics.median(pooled)
    low, high = bootstrap_interval(pooled)
    per_replicate = [statistics.median(ratios) for ratios in replicates]
    if low > 1 and estimate >= 1 + min_effect and min(per_replicate) >= 1 + min_effect / 2:
        verdict = "slower"
    elif high < 1 and estimate <= 1 / (1 + min_effect) and max(per_replicate) <= 1 / (1 + min_effect / 2):
        verdict = "faster"
    else:
        verdict = "unchanged"
    return {"ratio": estimate, "ci_low": low, "ci_high": high, "replicate_ratios": per_replicate,
            "verdict": verdict}


# --- two trees, two workers ------------------------------------------------------------------------

class Worker:
    def __init__(self, tree: Path, threads: int, user_models: list[str] = ()):
        # Passive OpenMP waiting: an idle worker's threads must not spin on the cores the other one times.
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_WAIT_POLICY": "PASSIVE",
               "HARNESS_USER_MODELS": "\n".join(user_models)}
        self.process = subprocess.Popen([sys.executable, "-m", "harness.evidence.regress_worker", str(threads)], cwd=tree,
                                        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker died while answering {request['cmd']}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self) -> None:
        try:
            self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.process.stdin.close()
        except OSError:
            pass
        self.process.wait(timeout=60)


@contextmanager
def worktree(ref: str):
    """REF checked out in a temporary worktree, with the current harness code in place of REF's."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=REPO, check=True,
                                capture_output=True, text=True).stdout.strip()
    except subprocess.CalledProcessError:
        raise SystemExit(f"error: {ref!r} is not a commit in this repository (try HEAD, main or a sha)")
    tmp = Path(tempfile.mkdtemp(prefix="regress-"))
    tree = tmp / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), commit], cwd=REPO, check=True)
    try:
        shutil.rmtree(tree / "harness", ignore_errors=True)
        shutil.copytree(REPO / "harness", tree / "harness", ignore=shutil.ignore_patterns("__pycache__"))
        yield tree, commit
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def interleaved(old: Worker, new: Worker, spec: dict, blocks: int, rounds: int) -> dict:
    """One replicate of one configuration: alternating blocks, then peak memory on each side."""
    for worker in (old, new):
        worker.ask(cmd="prepare", spec=spec)
    ratios, old_times, new_times = [], [], []
    for block in range(blocks):
        order = (old, new) if block % 2 == 0 else (new, old)
        times = {id(w): w.ask(cmd="time", rounds=rounds)["times"] for w in order}
        old_times += times[id(old)]
        new_times += times[id(new)]
        # The fastest round of a block: noise on a shared machine only ever adds time, so the minimum
        # is the least disturbed estimate of the step's cost (Chen & Revels, "Robust benchmarking in
        # noisy environments", 2016). Medians of all rounds are still reported as old_ms/new_ms.
        ratios.append(min(times[id(new)]) / min(times[id(old)]))
    # A reading can be None (no memory measurement on this platform): kept as None, judged "unknown".
    old_mem = [old.ask(cmd="memory")["peak_mb"] for _ in range(3)]
    new_mem = [new.ask(cmd="memory")["peak_mb"] for _ in range(3)]
    return {"ratios": ratios, "old_times": old_times, "new_times": new_times, "old_mem": old_mem, "new_mem": new_mem}


def _pooled_median(parts: list[dict], key: str) -> float | None:
    """Median of the readings under ``key`` over all replicates; None when there is none (missing
    readings are left out, never counted as 0)."""
    values = [value for part in parts for value in part[key] if value is not None]
    return statistics.median(values) if values else None


def memory_verdict(device: str, old_mem: float | None, new_mem: float | None, mem_tolerance: float) -> dict:
    """Peak-memory verdict: heavier, same, or unknown when either side has no reading."""
    if old_mem is None or new_mem is None:
        sides = [side for side, value in (("old", old_mem), ("new", new_mem)) if value is None]
        return {"memory_verdict": "unknown",
                "memory_note": f"no peak-memory reading on the {' and '.join(sides)} side"}
    # CPU peak RSS rise varies between processes by tens of MB on small inputs; the CUDA allocator's
    # peak is exact. Hence the absolute margins.
    heavier = new_mem > old_mem * (1 + mem_tolerance) + (2 if device == "cuda" else 32)
    return {"memory_verdict": "heavier" if heavier else "same"}


def combine(spec: dict, parts: list[dict], min_effect: float, mem_tolerance: float) -> dict:
    """The verdict of one configuration from its replicates."""
    timing = judge([part["ratios"] for part in parts], min_effect)
    old_mem, new_mem = _pooled_median(parts, "old_mem"), _pooled_median(parts, "new_mem")
    return {"config": label(spec), "old_ms": 1e3 * _pooled_median(parts, "old_times"),
            "new_ms": 1e3 * _pooled_median(parts, "new_times"), **timing,
            "block_ratios": [part["ratios"] for part in parts],
            "old_peak_mb": old_mem, "new_peak_mb": new_mem,
            **memory_verdict(spec["device"], old_mem, new_mem, mem_tolerance)}


def against_ref(args) -> dict:
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
                    print(f"[replicate {replicate}/{args.replicates}, {i + 1}/{len(specs)}] {label(spec):45s} "
                          f"x{statistics.median(part['ratios']):.3f}", flush=True)
            finally:
                old.close()
                new.close()
    timing_rows = [combine(spec, spec_parts, args.min_effect, args.mem_tolerance)
                   for spec, spec_parts in zip(specs, parts)]
    not_compared = [{"config": f"{row['config']} peak memory", "reason": row["memory_note"]}
                    for row in timing_rows if row["memory_verdict"] == "unknown"]
    return {"mode": "against", "ref": args.against, "ref_commit": commit, "facts": fact_rows,
            "planned": [label(spec) for spec in specs], "timings": timing_rows, "timings_judged": True,
            "not_compared": not_compared}


# --- against a committed run -----------------------------------------------------------------------

def config_key(spec: dict) -> tuple[str, str, str, str]:
    """How a planned configuration is looked up in a run: (model, input shape text, batch, mode)."""
    return spec["model"], "x".join(map(str, spec["input_shape"])), str(spec["batch"]), spec["mode"]


def _plain_row(row: dict, device: str) -> bool:
    """A row of the configuration this check times: fp32, eager, contiguous, no overrides, this device."""
    return (row.get("device", device) == device and row.get("dtype") == "fp32" and exec_mode_of(row) == "eager"
            and row.get("channels_last") != "True" and not row.get("overrides"))


def _plain_spec(spec: dict, device: str) -> bool:
    """The same test on a details.jsonl spec (older ones: a ``compile`` flag instead of ``exec_mode``)."""
    return (spec.get("device", device) == device and spec.get("precision", "fp32") == "fp32"
            and exec_mode_of({"exec_mode": spec.get("exec_mode", ""), "compile": spec.get("compile")}) == "eager"
            and not spec.get("channels_last") and not spec.get("overrides"))


class Baseline:
    """One committed run as this check sees it: its valid measurements, their samples, its machine."""

    def __init__(self, run: Path, device: str):
        self.run = run
        self.rows: dict[tuple, dict] = {}  # valid measurements (schema.measured_fine)
        self.invalid: dict[tuple, str] = {}  # configurations present only as an error or a not-warm row
        self.device_rows = 0
        for row in read_rows(run / "results.csv").rows:
            if not _plain_row(row, device):
                continue
            self.device_rows += 1
            key = (row["model"], row["input_shape"], str(row["batch"]), row["mode"])
            if measured_fine(row):
                self.rows[key] = row
                self.invalid.pop(key, None)
            elif key not in self.rows:
                self.invalid[key] = (f"error {row['error'][:80]!r}" if row.get("error") else
                                     "not warm (no settled warm-up; or a run too old to record it)")
        self.samples: dict[tuple, list[float]] = {}
        details = run / "details.jsonl"
        for line in details.read_text().splitlines() if details.exists() else ():
            d = json.loads(line)
            if _plain_spec(d["spec"], device):
                # synchronized steps: what the comparison times now (older runs: times_s)
                times = d.get("latency_s", d.get("times_s"))
                if times:
                    self.samples[config_key(d["spec"])] = times
        try:
            self.env = json.loads((run / "environment.json").read_text())["environment"]
        except (OSError, ValueError, KeyError):
            self.env = {}

    def why_not(self, key: tuple) -> str | None:
        """None when the run holds a valid, timed measurement of ``key``; else why not."""
        if key in self.rows:
            return None if key in self.samples else "no timing samples in its details.jsonl"
        return self.invalid.get(key, "no row for it")

    def holds(self, keys: list[tuple]) -> int:
        return sum(self.why_not(key) is None for key in keys)

    @property
    def name(self) -> str:
        return str(self.run.relative_to(REPO)) if self.run.is_relative_to(REPO) else str(self.run)


def _machine(env: dict) -> str:
    if not env:
        return "an unrecorded machine (no environment.json)"
    return (f"{env.get('device_name')} ({env.get('cpu_count')} CPUs, {env.get('threads')} threads, "
            f"torch {env.get('torch')}{', CUDA ' + env['cuda'] if env.get('cuda') else ''})")


def choose_baseline(runs_root: Path, device: str, keys: list[tuple], here: dict) -> tuple[Baseline | None, str]:
    """The committed run to compare with, and why it was chosen: among the runs with rows for ``device``,
    those from this machine (fingerprint), the one holding the most of ``keys`` (ties: the newest by
    name, which starts with its UTC time). Without a run from this machine, the best of the others, said
    so (its facts can still be checked; its timings cannot)."""
    runs = [Baseline(p, device) for p in sorted(runs_root.glob("*")) if (p / "results.csv").is_file()]
    runs = [b for b in runs if b.device_rows]
    if not runs:
        return None, ""
    mine = environment.fingerprint(here)
    same = [b for b in runs if b.env and environment.fingerprint(b.env) == mine]
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
                f"{_machine(here)}, so its timings cannot be judged")
    return best, why


def _way_out(args, missing: list[dict]) -> str:
    """How to get a baseline that holds ``missing`` (quick_specs dicts)."""
    from harness.bench.profiles import PROFILES, specs as profile_specs

    wanted = {config_key(spec) for spec in missing}
    models = sorted({spec["model"] for spec in missing})
    for name, profile in PROFILES.items():
        if profile.warmup < 1:  # smoke: its rows are not warm, so never a baseline
            continue
        measured = {config_key({"model": s.model, "input_shape": s.input_shape, "batch": s.batch, "mode": s.mode})
                    for s in profile_specs(name, args.device, models, precision="fp32")}
        if wanted <= measured:
            pattern = (f" --models {models[0]}" if len(models) == 1 else
                       f" --models '{args.models}'" if args.models else "")
            user = "".join(f" --model {ref}" for ref in args.model if any(m in ref for m in models))
            return (f"pass --baseline RUN_DIR naming a run that holds them, or measure them on this machine "
                    f"(`nox -s bench -- --profile {name} --device {args.device}{pattern}{user}`, then commit the "
                    f"run), or compare two trees with --against REF")
    return ("no bench profile measures all of them, so pass --baseline RUN_DIR naming a run that holds them, "
            "or compare two trees with --against REF")


def against_baseline(args) -> dict:
    from harness.bench.timing import time_step
    from harness.bench.workload import prepare
    from harness.bench.spec import BenchSpec

    specs = quick_specs(args.names, args.device, args.modes)
    keys = [config_key(spec) for spec in specs]
    here = environment.capture(args.device)
    if args.baseline:
        base = Baseline(Path(args.baseline), args.device)
        choice = (f"baseline {base.name} (given with --baseline): it holds {base.holds(keys)} of the "
                  f"{len(keys)} planned configurations")
    else:
        base, choice = choose_baseline(args.runs_root, args.device, keys, here)
        if base is None:
            return {"mode": "baseline", "cannot_judge": f"no committed run with {args.device} rows under "
                    f"{args.runs_root}; run `nox -s bench` and commit it, or use --against REF"}
    same_machine = bool(base.env) and environment.fingerprint(base.env) == environment.fingerprint(here)
    print(choice, flush=True)  # before the timing, which takes minutes
    held = base.holds(keys)
    fact_rows, timing_rows, not_compared = [], [], []
    for spec, key in zip(specs, keys):
        why = base.why_not(key)
        if why is not None:
            not_compared.append({"config": label(spec), "reason": f"not in the baseline: {why}"})
            continue
        row = base.rows[key]
        now = facts.variant_facts(spec["model"]) if spec["mode"] == "inference" else None
        if now and now["input_shape"][1:] == spec["input_shape"] == [int(n) for n in key[1].split("x")]:
            for metric, current in (("params_total", now["params_total"]), ("params_used", now["params_used"]),
                                    ("gmacs", round(now["macs"] / 1e9, 6))):
                if float(row[metric]) != float(current):
                    fact_rows.append({"model": spec["model"], "metric": metric, "before": row[metric], "after": current})
        if not same_machine:
            not_compared.append({"config": label(spec), "reason": "timing: the baseline is from another machine"})
            continue
        workload = prepare(BenchSpec.from_record(spec))
        times = time_step(workload.step, warmup=2, rounds=args.replicates * args.blocks * args.rounds)
        old = base.samples[key]
        ratios = [statistics.median(random.Random(i).choices(times, k=len(times))) /
                  statistics.median(random.Random(-i).choices(old, k=len(old))) for i in range(1, 400)]
        result = judge([ratios], args.min_effect)
        result["ratio"] = statistics.median(times) / statistics.median(old)
        timing_rows.append({"config": label(spec), "old_ms": 1e3 * statistics.median(old),
                            "new_ms": 1e3 * statistics.median(times), **result})
        print(f"[{len(timing_rows)}/{held}] {label(spec):45s} x{result['ratio']:.3f}", flush=True)
    notes = []
    if not same_machine:
        notes.append(f"timings not judged: the baseline ran on {_machine(base.env)}, this is {_machine(here)}")
    notes.append("peak memory: not compared against a committed run (--against REF compares it)")
    result = {"mode": "baseline", "baseline": base.name, "choice": choice, "facts": fact_rows,
              "planned": [label(s) for s in specs], "timings": timing_rows, "timings_judged": same_machine,
              "not_compared": not_compared, "note": "\n".join(notes)}
    if not timing_rows:
        missing = [spec for spec, key in zip(specs, keys) if base.why_not(key) is not None]
        reason = (f"{base.name} was measured on {_machine(base.env)}, not on this machine" if not same_machine
                  else f"none of the {len(specs)} planned configurations is a valid measurement in {base.name}")
        result["no_timing"] = (f"compared no timing: {reason}, so this check cannot say whether anything got "
                               f"slower. Way out: {_way_out(args, missing if same_machine else specs)}.")
    return result


def deterministic_only(args) -> dict:
    if args.update_facts:
        FACTS_SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        kept = json.loads(FACTS_SNAPSHOT.read_text()) if FACTS_SNAPSHOT.exists() else {}
        snapshot = {**kept, **facts.collect(args.names)}  # other variants' facts stay as they were
        FACTS_SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
        print(f"wrote {FACTS_SNAPSHOT}")
        return {}
    if not FACTS_SNAPSHOT.exists():
        return {"mode": "facts", "cannot_judge": f"no snapshot at {FACTS_SNAPSHOT}; create it with --update-facts"}
    before = json.loads(FACTS_SNAPSHOT.read_text())
    now = facts.collect(args.names)
    missing = sorted(set(now) - set(before))
    if missing:
        return {"mode": "facts", "cannot_judge": f"no facts for {', '.join(missing)} in {FACTS_SNAPSHOT}; record "
                f"them with --update-facts (and the same --model/--models) and commit the file"}
    before = {k: v for k, v in before.items() if k in now}
    return {"mode": "facts", "facts": facts.differences(before, now), "timings": [], "timings_judged": False,
            "note": "facts only (--deterministic-only)"}


# --- output ----------------------------------------------------------------------------------------

def _short(value) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mb(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_report(result: dict) -> int:
    """Print the verdict; returns the exit status (see the module docstring)."""
    if "cannot_judge" in result:
        print(f"cannot judge: {result['cannot_judge']}")
        return EXIT_CANNOT_JUDGE
    if result.get("note"):
        print(result["note"])
    if result["facts"] or result["timings"]:
        print(f"\n{'metric':48s} {'before':>14s} {'after':>14s} {'ratio':>7s}  verdict")
    for row in result["facts"]:
        print(f"{row['model'] + ' ' + row['metric']:48s} {_short(row['before']):>14s} {_short(row['after']):>14s} "
              f"{'':>7s}  CHANGED")
    for row in result["timings"]:
        print(f"{row['config'] + ' time (ms)':48s} {row['old_ms']:14.1f} {row['new_ms']:14.1f} {row['ratio']:7.3f}  "
              f"{row['verdict']} (95% CI {row['ci_low']:.3f}-{row['ci_high']:.3f})")
        if "memory_verdict" in row:
            known = row["memory_verdict"] != "unknown"
            ratio = f"{row['new_peak_mb'] / max(row['old_peak_mb'], 1e-9):7.3f}" if known else f"{'':>7s}"
            verdict = row["memory_verdict"] if known else f"unknown ({row['memory_note']})"
            print(f"{row['config'] + ' peak (MB)':48s} {_mb(row['old_peak_mb']):>14s} {_mb(row['new_peak_mb']):>14s} "
                  f"{ratio}  {verdict}")
    planned = result.get("planned", [])
    not_compared = result.get("not_compared", [])
    if not_compared:
        print(f"\nnot compared ({len(not_compared)}):")
        for row in not_compared:
            print(f"  {row['config']:46s} {row['reason']}")
    if result.get("no_timing"):
        print(f"\ncannot judge: {result['no_timing']}")
    slower = sum(r["verdict"] == "slower" for r in result["timings"])
    heavier = sum(r.get("memory_verdict") == "heavier" for r in result["timings"])
    regressions = len(result["facts"]) + slower + heavier
    # Timings in every mode that plans them; memory only where it is measured (--against).
    judged_memory = any("memory_verdict" in r for r in result["timings"])
    cannot = bool(not_compared) or bool(planned and not result["timings"])
    verdict = "REGRESSION" if regressions else "CANNOT JUDGE (see above)" if cannot else "no regression"
    counts = [f"{len(result['facts'])} changed facts", f"{slower} slower"]
    if judged_memory:
        counts += [f"{heavier} heavier",
                   f"{sum(r.get('memory_verdict') == 'unknown' for r in result['timings'])} memory unknown"]
    compared = f"{len(result['timings'])}" + (f" of {len(planned)} planned" if planned else "")
    print(f"\n{', '.join(counts)}, {compared} timings compared: {verdict}")
    return EXIT_REGRESSION if regressions else EXIT_CANNOT_JUDGE if cannot else EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.evidence.regress", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", metavar="REF", help="git ref to compare the working tree with")
    p.add_argument("--baseline", metavar="RUN_DIR", help="committed run to compare with (default: the run from this "
                   "machine holding the most of the planned configurations)")
    p.add_argument("--runs-root", type=Path, default=RUNS_ROOT, help=f"where committed runs are looked for when "
                   f"--baseline is not given (default {RUNS_ROOT})")
    p.add_argument("--deterministic-only", action="store_true", help="facts only, against the snapshot")
    p.add_argument("--update-facts", action="store_true", help="rewrite results/regress/facts.json")
    p.add_argument("--models", help="shell pattern over variant names (default: the article's variants, or only "
                   "your --model ones when given)")
    p.add_argument("--model", action="append", default=[], metavar="REF",
                   help="your own model, package.module:function or path/to/file.py:function (repeatable); a "
                   "relative path resolves in each compared tree, so --against compares your file's versions")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--replicates", type=int, default=2,
                   help="fresh pairs of worker processes, one after the other (--against)")
    p.add_argument("--blocks", type=int, default=5, help="alternating timing blocks per configuration and replicate")
    p.add_argument("--rounds", type=int, default=3, help="timed steps per block and side")
    p.add_argument("--min-effect", type=float, default=0.10, help="smallest slowdown called a regression")
    p.add_argument("--mem-tolerance", type=float, default=0.10,
                   help="peak-memory growth tolerated (plus 32 MB on CPU, 2 MB on CUDA)")
    p.add_argument("--modes", default="inference,train", type=lambda text: tuple(text.split(",")),
                   help="which of inference,train to time")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads per worker")
    p.add_argument("--out", type=Path, default=OUT, help="JSON verdict file")
    return p


def check_options(args) -> None:
    """Refuse bad options before any worker starts or model is built."""
    if args.models is not None:
        require_models(args.models)
    args.names = select_models("cpu", args.models, tuple(register_reference(r) for r in args.model))
    require_device(args.device)
    for option in ("replicates", "blocks", "rounds", "threads"):
        require_positive(f"--{option}", getattr(args, option))
    require_fraction("--min-effect", args.min_effect)
    require_fraction("--mem-tolerance", args.mem_tolerance)
    unknown = set(args.modes) - {"inference", "train"}
    if unknown or not args.modes:
        raise OptionError(f"--modes takes inference, train or both separated by a comma, not "
                          f"{','.join(args.modes)!r}. Way out: --modes inference,train.")
    if args.baseline and not (Path(args.baseline) / "results.csv").is_file():
        raise OptionError(f"--baseline {args.baseline}: no results.csv there. Way out: give a run folder "
                          f"under {args.runs_root}, or leave --baseline out to choose one from there.")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        check_options(args)
    except OptionError as error:
        return report_option_error(error)
    if args.update_facts:
        deterministic_only(args)
        return EXIT_OK
    if args.deterministic_only:
        result = deterministic_only(args)
    elif args.against:
        result = against_ref(args)
    else:
        result = against_baseline(args)
    status = print_report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**result, "exit_status": status}, indent=1, sort_keys=True, default=str) + "\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
