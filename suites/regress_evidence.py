"""Evidence that ``harness.evidence.regress --against`` works, on this machine (a script, not a test: minutes).

1. False alarms: compare the unchanged tree with HEAD ``--repeats`` times; count regressions flagged.
2. Planted slowdowns that change no output and no MAC count: ``time.sleep`` in ``UNet_3d.forward``
   sized as a fraction of the measured step; the detection rate per size.
3. Planted extra work: ``UNet_3d.forward`` runs its input DoubleConv twice and discards the result
   (same output); the facts must change. (It is the dispatched-operator histogram that changes:
   fvcore's traced MACs do not, since the JIT trace drops work whose result is unused.)

Each plant goes into a temporary worktree of HEAD, from which the comparison runs against HEAD.
Writes results/regress/evidence.json. Usage: python suites/regress_evidence.py [--repeats 10]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # harness, for the step time and the environment
TARGET = "reference_models/unet3d.py"
# Plants go at the start of UNet_3d.forward, before this line.
ANCHOR = "        return self._decode(*self._encode(x, prints=True))\n"
COMPARE = ["--models", "unet3d", "--modes", "inference"]  # replicates, blocks, rounds: the defaults


def compare(tree: Path, extra=()) -> dict:
    out = Path(tempfile.mkdtemp()) / "verdict.json"
    proc = subprocess.run([sys.executable, "-m", "harness.evidence.regress", "--against", "HEAD", *COMPARE, *extra,
                           "--out", str(out)], cwd=tree, capture_output=True, text=True)
    result = json.loads(out.read_text())
    timing = result["timings"][0] if result["timings"] else {}
    return {"exit": proc.returncode, "ratio": timing.get("ratio"), "ci": [timing.get("ci_low"), timing.get("ci_high")],
            "replicate_ratios": timing.get("replicate_ratios"),
            "verdict": timing.get("verdict"), "changed_facts": [f"{f['model']} {f['metric']}" for f in result["facts"]]}


def planted_tree(code: str) -> Path:
    tree = Path(tempfile.mkdtemp(prefix="plant-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), "HEAD"], cwd=REPO, check=True)
    path = tree / TARGET
    source = path.read_text()
    assert ANCHOR in source, "the plant's anchor moved: update regress_evidence.py"
    path.write_text("import time\n" + source.replace(ANCHOR, code + ANCHOR))
    return tree


def remove(tree: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)


def step_ms() -> float:
    from harness.bench.spec import BenchSpec
    from harness.bench.timing import time_step
    from harness.bench.workload import prepare
    workload = prepare(BenchSpec("unet3d", (1, 16, 16, 16), 1, "inference"))
    return 1e3 * statistics.median(time_step(workload.step, warmup=2, rounds=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--slowdowns", default="0.05,0.1,0.2,0.4")
    parser.add_argument("--plant-repeats", type=int, default=3)
    args = parser.parse_args()
    evidence = {"compare_args": COMPARE}
    evidence["unchanged"] = [compare(REPO) for _ in range(args.repeats)]
    flagged = sum(r["exit"] != 0 for r in evidence["unchanged"])
    print(f"unchanged tree: {flagged}/{args.repeats} flagged; ratios "
          f"{[round(r['ratio'], 3) for r in evidence['unchanged']]}", flush=True)
    base_ms = step_ms()
    evidence["step_ms"] = base_ms
    evidence["slowdowns"] = []
    for fraction in map(float, args.slowdowns.split(",")):
        tree = planted_tree(f"        time.sleep({fraction * base_ms / 1e3:.4f})\n")
        try:
            runs = [compare(tree) for _ in range(args.plant_repeats)]
        finally:
            remove(tree)
        caught = sum(r["exit"] == 1 for r in runs)
        evidence["slowdowns"].append({"planted": fraction, "runs": runs, "caught": caught})
        print(f"planted {fraction:.0%} slowdown: caught {caught}/{len(runs)}; ratios "
              f"{[round(r['ratio'], 3) for r in runs]}", flush=True)
    tree = planted_tree("        _ = self.in_conv(x)\n")
    try:
        evidence["extra_work"] = compare(tree)
    finally:
        remove(tree)
    print(f"planted extra work: exit {evidence['extra_work']['exit']}, changed facts "
          f"{evidence['extra_work']['changed_facts']}")
    reliable = None  # the smallest planted size from which every size up was caught every time
    for plant in sorted(evidence["slowdowns"], key=lambda p: -p["planted"]):
        if plant["caught"] < len(plant["runs"]):
            break
        reliable = plant["planted"]
    evidence["false_alarms"] = f"{flagged}/{args.repeats}"
    evidence["smallest_reliably_caught"] = reliable
    print(f"false alarms {evidence['false_alarms']}; smallest slowdown caught every time: "
          f"{evidence['smallest_reliably_caught']}")
    from harness.bench import environment
    evidence["environment"] = environment.capture("cpu")
    out = REPO / "results" / "regress" / "evidence.json"
    out.write_text(json.dumps(evidence, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
