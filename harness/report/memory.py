"""Predicted against measured peak GPU memory, per CUDA row that has both (``memory.md``). No torch here:
the predictions were made when the rows were measured (``predicted_peak_mb``, ``predicted_floor_mb``,
harness.memory) and are only read back. torch.compile and CUDA-graph rows are predicted as the eager step: they are
shown, labelled "predicted as eager", and kept out of the accuracy figures (the worst ratio, the floors)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMNS = ["run_id", "model", "input_shape", "batch", "mode", "dtype", "exec_mode", "channels_last",
           "peak_mem_mb", "predicted_peak_mb", "predicted_floor_mb", "predicted_domain"]


def checked_rows(results: pd.DataFrame) -> pd.DataFrame:
    """CUDA rows measured fine that carry a prediction, with ``ratio`` = predicted / measured and
    ``floor_below`` = whether the live-tensor floor is at or below the measured peak."""
    if "predicted_peak_mb" not in results or results.empty:
        return pd.DataFrame(columns=COLUMNS + ["ratio", "floor_below"])
    rows = results[(results["device"] == "cuda") & (results["error"] == "")
                   & results["predicted_peak_mb"].notna() & results["peak_mem_mb"].notna()]
    rows = rows[[c for c in COLUMNS if c in rows]].copy()
    rows["ratio"] = rows["predicted_peak_mb"] / rows["peak_mem_mb"]
    rows["floor_below"] = rows["predicted_floor_mb"] <= rows["peak_mem_mb"]
    return rows.sort_values(["run_id", "model", "mode", "dtype", "input_shape", "batch"], kind="stable")


def _eager(run: pd.DataFrame) -> pd.Series:
    """Rows whose step the simulation runs as measured (eager); older runs without ``exec_mode`` count as eager."""
    if "exec_mode" not in run:
        return pd.Series(True, index=run.index)
    return run["exec_mode"].fillna("eager").replace("", "eager") == "eager"


def markdown(rows: pd.DataFrame) -> str:
    parts = ["# Peak GPU memory: predicted against measured", "",
             "Each CUDA row's `peak_mem_mb` (torch.cuda.max_memory_allocated over the measured step) beside the "
             "memory model's prediction, made on the CPU when the row was measured (docs/memory.md): "
             "`predicted` = live tensors replayed through the CUDA caching allocator plus the fitted convolution "
             "workspaces; `floor` = live tensors alone, which should never exceed the measured peak.", ""]
    for run_id, run in rows.groupby("run_id", sort=True):
        eager = _eager(run)
        parts += [f"## {run_id}", ""]
        if eager.any():
            judged = run[eager]
            worst = judged.loc[(judged["ratio"] - 1).abs().idxmax()]
            parts += [f"Worst ratio: {worst['ratio']:.3f} ({worst['model']} {worst['input_shape']} "
                      f"b{int(worst['batch'])} {worst['mode']} {worst['dtype']}); {int(judged['floor_below'].sum())} of "
                      f"{len(judged)} floors at or below the measured peak (eager rows only)."]
        else:
            parts += ["No eager row: no accuracy figure (compile and CUDA-graph rows are predicted as eager)."]
        if (~eager).any():
            parts += [f"{int((~eager).sum())} compile or CUDA-graph rows are predicted as eager and left out of these "
                      f"figures."]
        parts += [""]
        shown = pd.DataFrame({
            "model": run["model"], "input": run["input_shape"], "batch": run["batch"].astype(int),
            "mode": run["mode"], "dtype": run["dtype"],
            "exec": run["exec_mode"].where(eager, run["exec_mode"] + " (predicted as eager)")
            if "exec_mode" in run else "eager",
            "measured MiB": run["peak_mem_mb"].map(lambda v: f"{v:.1f}"),
            "predicted MiB": run["predicted_peak_mb"].map(lambda v: f"{v:.1f}"),
            "predicted / measured": run["ratio"].map(lambda v: f"{v:.3f}"),
            "floor MiB": run["predicted_floor_mb"].map(lambda v: f"{v:.1f}"),
            "floor <= measured": run["floor_below"].map(lambda v: "yes" if v else "**no**"),
            "domain": run["predicted_domain"].fillna("").map(lambda v: v or "?") if "predicted_domain" in run else "?",
        })
        parts += [shown.to_markdown(index=False), ""]
    return "\n".join(parts)


def write(results: pd.DataFrame, out: Path) -> list[Path]:
    """``memory.md`` when some CUDA row carries a prediction; nothing otherwise."""
    rows = checked_rows(results)
    if rows.empty:
        return []
    path = Path(out) / "memory.md"
    path.write_text(markdown(rows))
    return [path]
