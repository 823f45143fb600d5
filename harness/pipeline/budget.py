"""Cores per GPU and epoch time: arithmetic on recorded numbers only (the per-core rates this run measured and
the training step times of committed runs), never a typed-in number.

- samples the step consumes per second: ``batch / step_s``;
- cores needed: that rate over the pipeline's per-core rate (ideal linear scaling over cores: the loader
  scaling rows say how far that holds on this machine);
- an nnU-Net epoch (250 iterations) on ``cores`` cores: ``iterations * max(step_s, batch / (rate * cores))``,
  limited by the step (the GPU on a GPU row) when the step is the longer, else by the CPU augmentation.
"""
from __future__ import annotations

import math
from pathlib import Path

NNUNET_ITERATIONS = 250  # nnUNetTrainer.num_iterations_per_epoch


def cores_needed(step_ms: float, batch: int, samples_per_s_per_core: float) -> float:
    return (batch / (step_ms / 1000)) / samples_per_s_per_core


def epoch(step_ms: float, batch: int, samples_per_s_per_core: float, cores: int,
          iterations: int = NNUNET_ITERATIONS) -> dict:
    step_s = step_ms / 1000
    feed_s = batch / (samples_per_s_per_core * cores)
    return {"epoch_s": iterations * max(step_s, feed_s), "step_s": step_s, "feed_s": feed_s,
            "limited_by": "step" if step_s >= feed_s else "cpu"}


def step_rows(runs_root: Path) -> tuple[list[dict], str]:
    """The tensor-fed training rows (3D, no error, a step time) of every committed run under ``runs_root``: CUDA
    rows when any run has them, else the CPU rows; and a note saying which."""
    from harness.store.load import read_run

    found = []
    for folder in sorted(Path(runs_root).glob("*")):
        if not (folder / "results.csv").is_file():
            continue
        run = read_run(folder)
        for row in run.rows:
            dims = row.get("input_shape", "").split("x")
            try:
                step = float(row.get("step_ms") or "nan")
                batch = int(row.get("batch") or 0)
            except ValueError:
                continue
            if row.get("loader", "none") not in ("", "none"):  # a loader-fed row: its step includes waiting for data
                continue
            if row.get("mode") != "train" or row.get("error") or len(dims) != 4 or not math.isfinite(step) or batch < 1:
                continue
            found.append({"run": run.name, "model": row["model"], "input_shape": row["input_shape"],
                          "patch": "x".join(dims[1:]), "batch": batch, "device": row.get("device", ""),
                          "dtype": row.get("dtype", ""), "exec_mode": row.get("exec_mode", ""),
                          "channels_last": row.get("channels_last", ""), "step_ms": step})
    cuda = [r for r in found if r["device"] == "cuda"]
    if cuda:
        return cuda, f"GPU step times: {len(cuda)} CUDA training rows of committed runs under {runs_root}"
    note = (f"no GPU rows: no committed run under {runs_root} has a CUDA training row, so the step times are the "
            f"{len(found)} CPU training rows (labelled cpu); a GPU step is far shorter and needs more cores")
    return found, note


def budget_rows(rates: list[dict], steps: list[dict], cores: int, iterations: int = NNUNET_ITERATIONS) -> list[dict]:
    """One row per (step row, pipeline) whose patch has a measured rate."""
    out = []
    by_patch = {(r["pipeline"], r["patch"]): r for r in rates if not r.get("error")}
    for step in steps:
        for (name, patch), rate in by_patch.items():
            if patch != step["patch"]:
                continue
            per_core = rate["samples_per_s"]
            e = epoch(step["step_ms"], step["batch"], per_core, cores, iterations)
            side = e["limited_by"]
            out.append({**step, "pipeline": name, "samples_per_s_per_core": per_core,
                        "cores_needed": cores_needed(step["step_ms"], step["batch"], per_core), "cores": cores,
                        "iterations": iterations, "epoch_s": e["epoch_s"],
                        "limited_by": ("CPU (augmentation)" if side == "cpu" else
                                       "GPU (step)" if step["device"] == "cuda" else "step (CPU row, no GPU rows)")})
    return out
