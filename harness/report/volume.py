"""Whole-volume inference in the report: a "Whole-volume inference" table (``volume.md``, ``volume.csv``), a plot
of seconds per volume against ``sw_batch_size``, and MLPerf's published 3D-UNet figures as an external reference
beside the harness's own GPU rows (appended to ``reproduction.md``). Rows of mode ``volume`` only; the
comparison tables and scaling plots keep the patch rows. Nothing is measured here."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness.report.plots import colours, save_figure  # noqa: E402
from harness.report.tables import runs_and_commits  # noqa: E402
from harness.store.schema import SOURCE_LABELS  # noqa: E402

VOLUME_MODE = "volume"
SETTING = ["device", "device_name", "dtype", "exec_mode", "channels_last"]
WINDOWING = ["volume_shape", "roi", "overlap", "blend", "mirror"]

# External references, not measured here: MLPerf Inference's closed-division 3D-UNet (KiTS19) results, where one
# sample is one whole preprocessed volume (128³ windows, overlap 0.5, Gaussian blending), as issue 18 quotes them.
MLPERF_REFERENCE = [
    ("MLPerf Inference v4.0, closed division", "one H100-SXM-80GB", 6.44),
    ("MLPerf Inference v2.1, closed division", "one A100-PCIe-80GB", 3.15),
]


def _flag(value) -> bool:
    return str(value) == "True"


def split(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(patch rows, whole-volume rows), each with its own index."""
    is_volume = results["mode"] == VOLUME_MODE
    volumes = results[is_volume].copy()
    for column in ("volume_shape", "roi", "blend"):
        volumes[column] = volumes[column].astype(str)
    for column in ("mirror", "volume_padded"):
        volumes[column] = volumes[column].map(_flag)
    volumes["best"] = volumes["sw_batch_best"].map(_flag)
    return results[~is_volume].reset_index(drop=True), volumes.reset_index(drop=True)


def _ok(volumes: pd.DataFrame) -> pd.DataFrame:
    rows = volumes[volumes["ok"]] if "ok" in volumes else volumes.iloc[0:0]
    return rows.sort_values(SETTING + ["model_order", "elements", "roi", "overlap", "blend", "mirror", "sw_batch_size"],
                            kind="stable")


def _number(form: str):
    return lambda value: "" if pd.isna(value) else form.format(value)


def display_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One group's rows as text, the same digits in every output format."""
    return pd.DataFrame({
        "Variant": [m if s in ("article", "") else f"{m} ({SOURCE_LABELS.get(s, s)})"
                    for m, s in zip(rows["model"], rows["source"])],
        "Volume (C×D×H×W)": rows["volume_shape"] + ["" if not p else " (padded)" for p in rows["volume_padded"]],
        "Window": rows["roi"],
        "Overlap": rows["overlap"].map("{:g}".format),
        "Blend": rows["blend"],
        "Mirror": rows["mirror"].map({True: "yes", False: "no"}),
        "sw batch": [f"{int(n)}{' (best)' if best else ''}" for n, best in zip(rows["sw_batch_size"], rows["best"])],
        "Windows": rows["windows"].map(_number("{:.0f}")),
        "Forward passes": rows["forward_passes"].map(_number("{:.0f}")),
        "s/volume (IQR)": [f"{s:.3f} ({q:.3f})" for s, q in zip(rows["volume_s"], rows["volume_iqr_s"])],
        "Volumes/s": rows["volumes_per_s"].map(_number("{:.3g}")),
        "Mvox/s": rows["mvox_per_s"].map(_number("{:.3g}")),
        "Stitch fraction": rows["stitch_fraction"].map(_number("{:.3f}")),
        "Peak mem. (MB)": rows["peak_mem_mb"].map(_number("{:.0f}")),
        "GFLOP/volume": rows["volume_gflop"].map(_number("{:.1f}")),
        "MFU (%)": (100 * rows["mfu"]).map(_number("{:.1f}")),
    }).reset_index(drop=True)


def groups(volumes: pd.DataFrame):
    """(title, footnote, rows) per device, precision and execution setting, measured rows only."""
    for _, rows in _ok(volumes).groupby(SETTING, sort=True):
        first = rows.iloc[0]
        memory = ("CUDA peak allocated" if first["memory_kind"] == "cuda_allocated"
                  else "rise of the process's peak RSS during one whole volume")
        title = (f"{first['device'].upper()}: {first['device_name']}, {first['dtype']}, {first['exec_mode']}"
                 f"{', channels-last' if _flag(first['channels_last']) else ''}")
        footnote = (f"Measured on {first['device_name']} ({first['device']}), torch {first['torch']}"
                    f"{', CUDA ' + first['cuda'] if first['cuda'] else ''}, {int(first['threads'])} threads; "
                    f"{runs_and_commits(rows)}. One step is one whole volume through "
                    f"monai.inferers.sliding_window_inference: s/volume is the median synchronized volume with the "
                    f"interquartile range, volumes/s and Mvox/s (input voxels) come from volumes issued back to back; "
                    f"the stitch fraction is the share of the volume time outside the network (the windows' own "
                    f"forward passes were timed back to back at the same sw batch); memory is the {memory}, the "
                    f"stitched output included; GFLOP/volume counts the forward passes of every window; MFU is "
                    f"achieved FLOP/s over this machine's measured matmul peak. (best) marks the sw batch that "
                    f"--sw-batch auto chose; (padded): an axis shorter than the window, padded as MONAI pads.")
        yield title, footnote, rows


def markdown(volumes: pd.DataFrame) -> str:
    parts = ["# Whole-volume inference", ""]
    for title, footnote, rows in groups(volumes):
        parts += [f"### {title}", "", display_table(rows).to_markdown(index=False), "", f"*{footnote}*", ""]
    return "\n".join(parts)



def sw_batch_figure(rows: pd.DataFrame, colour: dict, title: str, stem: Path) -> list[Path]:
    """Seconds per volume against sw_batch_size, one line per variant and windowing."""
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    for key, line in rows.groupby(["model_order", "model"] + WINDOWING, sort=True):
        line = line.sort_values("sw_batch_size")
        _, model, shape, roi, overlap, blend, mirror = key
        label = f"{model}: {shape}, window {roi}, overlap {overlap:g}, {blend}{', mirrored' if mirror else ''}"
        ax.errorbar(line["sw_batch_size"], line["volume_s"], yerr=line["volume_iqr_s"] / 2, marker="o", capsize=3,
                    color=colour[model], label=label)
        best = line[line["best"]]
        ax.plot(best["sw_batch_size"], best["volume_s"], marker="*", markersize=14, linestyle="none",
                color=colour[model])
    ax.set_xscale("log", base=2)
    sizes = sorted(int(n) for n in rows["sw_batch_size"].unique())
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_yscale("log")
    ax.set_xlabel("sw_batch_size (windows per forward call; log2)")
    ax.set_ylabel("seconds per volume (median, bars: IQR; log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    ax.set_title(title + ("\n(a star marks the sw batch --sw-batch auto chose)" if rows["best"].any() else ""))
    return save_figure(fig, stem)


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def write(volumes: pd.DataFrame, out: Path) -> list[Path]:
    """volume.md, volume.csv and one plot per setting; nothing when no whole volume was measured fine."""
    rows = _ok(volumes)
    if rows.empty:
        return []
    written = [out / "volume.md", out / "volume.csv"]
    (out / "volume.md").write_text(markdown(volumes))
    rows.drop(columns=["model_order"]).to_csv(out / "volume.csv", index=False, float_format="%.6g")
    colour = colours(list(rows.sort_values("model_order")["model"].drop_duplicates()))
    for title, _, group in groups(volumes):
        written += sw_batch_figure(group, colour, title, out / f"volume-sw-batch-{_slug(title)}")
    return written


def reference(volumes: pd.DataFrame) -> str:
    """The reproduction report's section: MLPerf's published figures beside the harness's own GPU rows."""
    lines = ["## Whole volumes beside MLPerf's 3D-UNet", "",
             "MLPerf Inference's 3D-UNet benchmark (KiTS19) counts one whole preprocessed volume as one sample, cut "
             "into 128³ windows at overlap 0.5 with Gaussian blending: what `--preset mlperf` runs. Its published "
             "closed-division figures, external references that the harness did not measure (as issue 18 quotes "
             "them):", "", "| Source | Accelerator | Samples (volumes)/s |", "|---|---|---|"]
    lines += [f"| {source} | {accelerator} | {value:g} |" for source, accelerator, value in MLPERF_REFERENCE]
    gpu = _ok(volumes)
    gpu = gpu[gpu["device"] == "cuda"]
    lines += ["", "The harness's own GPU rows (volumes/s from volumes issued back to back):", ""]
    if gpu.empty:
        lines += ["No committed GPU run holds whole-volume rows yet (`scripts/gpu_checks.sh` measures the `volume` "
                  "profile on a GPU).", ""]
    else:
        lines += ["| Variant | GPU | Precision, execution | Volume | Window, overlap, blend | sw batch | Volumes/s | "
                  "Stitch fraction |", "|---|---|---|---|---|---|---|---|"]
        for _, r in gpu.iterrows():
            lines.append(f"| {r['model']} | {r['device_name']} | {r['dtype']}, {r['exec_mode']} | {r['volume_shape']} | "
                         f"{r['roi']}, {r['overlap']:g}, {r['blend']}{', mirrored' if r['mirror'] else ''} | "
                         f"{int(r['sw_batch_size'])}{' (best)' if r['best'] else ''} | {r['volumes_per_s']:.3g} | "
                         f"{r['stitch_fraction']:.3f} |")
        lines.append("")
    lines += ["Not like for like, and not a ranking: MLPerf's closed-division submissions run their own inference "
              "engines (NVIDIA's with TensorRT), at whatever precision keeps the reference's accuracy target, on MLPerf's "
              "3D U-Net for KiTS19 and on the real cases, whose sizes vary; the harness runs PyTorch (eager, "
              "torch.compile or CUDA graphs) through MONAI's sliding_window_inference, on the article's networks and "
              "the peers (other depths, widths and untrained weights), on fixed volume sizes in the range of the "
              "preprocessed cases filled with noise, and checks no accuracy. The figures place the harness's rows in "
              "the field.", ""]
    return "\n".join(lines)
