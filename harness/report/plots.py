"""Figures (PNG and PDF): throughput and peak memory against input size, and a per-variant
comparison at the reference point. One colour per variant throughout; log2 axes where sizes double.
Throughput carries error bars: its 95% interval (harness.report.tables.with_intervals) where the raw
samples allow."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

# Fixed metadata so the same results give the same bytes.
SAVE = {".png": dict(dpi=120, metadata={"Software": None}), ".pdf": dict(metadata={"CreationDate": None})}


def colours(variants: list[str]) -> dict[str, tuple]:
    palette = plt.get_cmap("tab10")
    return {name: palette(i % 10) for i, name in enumerate(variants)}


def save_figure(fig, stem: Path) -> list[Path]:
    paths = []
    for suffix, options in SAVE.items():
        path = stem.with_suffix(suffix)
        fig.savefig(path, bbox_inches="tight", **options)
        paths.append(path)
    plt.close(fig)
    return paths


def error_bars(values: pd.Series, low: pd.Series, high: pd.Series) -> tuple[list[bool], list[list[float]]]:
    """Which points have an interval, and their (below, above) extents for ``errorbar``'s ``xerr``/``yerr``."""
    has = [not (pd.isna(lo) or pd.isna(hi)) for lo, hi in zip(low, high)]
    # Clamped at 0: the table's value is rounded in results.csv, and can sit a hair outside an interval that
    # shrank to a point (every sample the same).
    below = [max(0.0, v - lo) for v, lo, h in zip(values, low, has) if h]
    above = [max(0.0, hi - v) for v, hi, h in zip(values, high, has) if h]
    return has, [below, above]


def _densest_batch(rows: pd.DataFrame) -> int | None:
    """The batch size with the most (variant, input size) points (so each line compares like with like)."""
    counts = rows.groupby("batch").size()
    return None if counts.empty else int(counts.sort_values(ascending=False, kind="stable").index[0])


def scaling_figure(rows: pd.DataFrame, colour: dict, title: str, stem: Path) -> list[Path]:
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    for column, mode in enumerate(("inference", "train")):
        subset = rows[(rows["mode"] == mode) & rows["ok"]]
        batch = _densest_batch(subset)
        subset = subset[subset["batch"] == batch]
        bars = False
        for model, line in subset.groupby("model_order", sort=True):
            name = line["model"].iloc[0]
            style = "--" if line["spatial_dims"].iloc[0] == 2 else "-"
            for row, metric in enumerate(("samples_per_s", "peak_mem_mb")):
                axes[row][column].plot(line["elements"], line[metric], style, marker="o", color=colour[name],
                                       label=name)
            if "samples_per_s_low" in line:
                has, extent = error_bars(line["samples_per_s"], line["samples_per_s_low"], line["samples_per_s_high"])
                if any(has):
                    axes[0][column].errorbar(line["elements"][has], line["samples_per_s"][has], yerr=extent, fmt="none",
                                             ecolor=colour[name], capsize=2, linewidth=1)
                    bars = True
        axes[0][column].set_title(f"{mode} (batch {batch})")
        axes[0][column].set_ylabel("throughput (samples/s, log" + ("; bars: 95% interval)" if bars else ")"))
        axes[1][column].set_ylabel("peak memory (MB, log)")
        for row in range(2):
            ax = axes[row][column]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("input size per sample (voxels; pixels for dashed 2D lines; log2)")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", title="variant")
    fig.suptitle(title)
    return save_figure(fig, stem)


def comparison_figure(table: pd.DataFrame, colour: dict, title: str, stem: Path) -> list[Path]:
    """Bars per variant at the reference point: throughputs, work and parameters."""
    table = table.sort_values(["spatial_dims", "model_order"], ascending=[False, True], kind="stable")
    names = list(table["model"])
    fig, axes = plt.subplots(1, 4, figsize=(15, 4.2), constrained_layout=True)
    panels = [("inference_samples_per_s", "inference (samples/s)"), ("train_samples_per_s", "train (samples/s)"),
              ("gmacs", "GMACs per sample"), ("params_m", "parameters (M): total, hatched = never used")]
    for ax, (column, label) in zip(axes, panels):
        ax.barh(names, table[column], color=[colour[n] for n in names])
        if f"{column}_low" in table:  # throughput: its 95% interval where the raw samples allow
            has, extent = error_bars(table[column], table[f"{column}_low"], table[f"{column}_high"])
            if any(has):
                ax.errorbar(table[column][has], [n for n, h in zip(names, has) if h], xerr=extent, fmt="none",
                            ecolor="black", capsize=2, linewidth=1)
                label += "; bars: 95% interval"
        if column == "params_m":
            unused = table["params_m"] - table["params_used_m"]
            ax.barh(names, unused, left=table["params_used_m"], color="white", edgecolor="black", hatch="//")
        ax.set_xlabel(label)
        ax.invert_yaxis()
        ax.grid(True, axis="x", alpha=0.3)
    for ax in axes[1:]:
        ax.set_yticklabels([])
    shapes = ", ".join(f"{s} b{b}" for s, b in table[["input_shape", "batch"]].drop_duplicates().itertuples(index=False))
    fig.suptitle(f"{title}: at {shapes}")
    return save_figure(fig, stem)
