"""The input pipeline in the report (issue 28; docs/pipeline.md): ``pipeline.md`` from the committed pipeline run
(``results/pipeline/<id>/pipeline.json``, written by ``python -m harness pipeline``): the per-core augmentation rates
with their intervals, a DataLoader's throughput against its workers (``pipeline-workers.png``/``.pdf``), the cores
each variant needs per GPU with the expected nnU-Net epoch time, and the published figures the question comes from
as external references. With the bench's rows (``results``), also the loader-fed training rows beside their
tensor-fed twins (``--loader``: the share of the step spent waiting for data). Nothing is measured here; no torch.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harness.options import InputFileError  # noqa: E402
from harness.report.plots import colours, save_figure  # noqa: E402

PAGE = "pipeline.md"
FIGURE = "pipeline-workers"

# External references, not measured here: the figures issue 28 starts from, each where it was published.
ANCHORS = [
    ("nnU-Net's benchmarking page (documentation/benchmarking.md)",
     "https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/benchmarking.md",
     "5 epochs timed with and without data loading; v1 on an A100, 3d_fullres, real vs dummy data: Heart 51.17 vs "
     "48.53 s, Liver 44.48 vs 41.10 s, Prostate 47.19 vs 43.87 s per epoch, reached with 32 augmentation workers; "
     "it asks for at least 6 CPU cores (12 threads) per GPU"),
    ("nnU-Net #3063", "https://github.com/MIC-DKFZ/nnUNet/issues/3063",
     "A100, 8 CPU workers, batch 2: GPU utilisation 39.9% -> 86.0% and 302 -> 145 ms per iteration once "
     "augmentation moved off the CPU, where it cost about 1 s per sample"),
    ("nnU-Net #1086", "https://github.com/MIC-DKFZ/nnUNet/issues/1086",
     "augmentation processes at 100% CPU while the GPU idles"),
    ("nnU-Net #1919", "https://github.com/MIC-DKFZ/nnUNet/issues/1919",
     "epochs of 105-110 s only after nnUNet_n_proc_DA=12 (also #1842, #606)"),
    ("MONAI #7498", "https://github.com/Project-MONAI/MONAI/issues/7498", "\"transforms extremely slow\""),
    ("MONAI tutorials PR #774", "https://github.com/Project-MONAI/tutorials/pull/774",
     "ThreadDataLoader + ToDeviced: 144.9 -> 138.0 s per epoch"),
]


def latest_run(pipeline_root: Path) -> Path | None:
    """The pipeline.json of the last run under ``pipeline_root`` by folder name (ids are UTC times by default);
    None when there is none."""
    found = sorted(Path(pipeline_root).glob("*/pipeline.json"), key=lambda p: p.parent.name)
    return found[-1] if found else None


def load(path: Path) -> dict:
    """A pipeline.json, or InputFileError (exit 2) naming the file when it is damaged."""
    try:
        result = json.loads(Path(path).read_text())
        if not isinstance(result, dict) or not isinstance(result.get("rates"), list):
            raise ValueError("no 'rates' list")
    except (OSError, ValueError) as error:
        raise InputFileError(f"{path}: not a pipeline result ({error}). Way out: run `python -m harness pipeline` "
                             f"again, or remove the folder {Path(path).parent}.") from None
    return result


def _number(value, form: str = "{:.2f}") -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else form.format(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            + ["| " + " | ".join(row) + " |" for row in rows])


def rates_table(result: dict) -> list[str]:
    rows = []
    for r in result["rates"]:
        if r.get("error"):
            rows.append([r["pipeline"], r["patch"], "error", r["error"], "", r.get("source", "")])
        else:
            rows.append([r["pipeline"], r["patch"], _number(r["samples_per_s"]),
                         f"[{_number(r['ci_low'])}, {_number(r['ci_high'])}]", _number(r["ms_per_sample"], "{:.1f}"),
                         r.get("source", "")])
    return _table(["pipeline", "patch", "samples/s per core", "95% interval", "ms/sample", "built by"], rows)


def _per_core(result: dict) -> dict[tuple[str, str], float]:
    return {(r["pipeline"], r["patch"]): r["samples_per_s"] for r in result["rates"] if not r.get("error")}


def scaling_table(result: dict) -> list[str]:
    """DataLoader rows, each with its efficiency: samples/s over (workers x the one-core rate at its patch)."""
    per_core, rows = _per_core(result), []
    for r in result.get("loader_scaling", []):
        if r.get("error"):
            rows.append([r["pipeline"], r["patch"], str(r["workers"]), "error", r["error"]])
            continue
        base = per_core.get((r["pipeline"], r["patch"]))
        efficiency = r["samples_per_s"] / (r["workers"] * base) if base else None
        rows.append([r["pipeline"], r["patch"], str(r["workers"]), _number(r["samples_per_s"]),
                     _number(efficiency, "{:.0%}")])
    return _table(["pipeline", "patch", "workers", "samples/s", "of linear scaling"], rows)


def budget_table(result: dict) -> list[str]:
    """One row per committed step row (variant, patch, batch, device, run), with each pipeline's cores needed and
    epoch time (the limiting side in brackets: CPU augmentation, the GPU step, or the step of a CPU row)."""
    budget = result.get("budget", [])
    pipelines = list(dict.fromkeys(b["pipeline"] for b in budget))
    steps: dict[tuple, dict] = {}
    for b in budget:
        key = (b["model"], b["patch"], b["batch"], b["device"], b["step_ms"], b["run"])
        side = "CPU" if b["limited_by"].startswith("CPU") else "GPU" if b["limited_by"].startswith("GPU") else "step"
        steps.setdefault(key, {})[b["pipeline"]] = (_number(b["cores_needed"]), f"{_number(b['epoch_s'], '{:.1f}')} "
                                                                               f"({side})")
    rows = [[model, patch, str(batch), device, _number(step, "{:.1f}"), run,
             *[cell for p in pipelines for cell in by.get(p, ("", ""))]]
            for (model, patch, batch, device, step, run), by in steps.items()]
    return _table(["variant", "patch", "batch", "device", "step ms", "step from run",
                   *[f"{label} ({p})" for p in pipelines for label in ("cores needed", "epoch s")]], rows)


def workers_figure(result: dict, stem: Path) -> list[Path]:
    """Samples per second through the DataLoader against its workers, one line per pipeline and patch, beside the
    ideal line (workers x the one-core rate, dotted). Empty when the run measured no scaling."""
    rows = [r for r in result.get("loader_scaling", []) if not r.get("error")]
    if not rows:
        return []
    lines = list(dict.fromkeys((r["pipeline"], r["patch"]) for r in rows))
    colour = colours([f"{p} {s}" for p, s in lines])
    per_core = _per_core(result)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for pipeline, patch in lines:
        points = sorted((r["workers"], r["samples_per_s"]) for r in rows if (r["pipeline"], r["patch"]) == (pipeline, patch))
        workers = [w for w, _ in points]
        name = f"{pipeline} {patch}"
        ax.plot(workers, [s for _, s in points], "-o", color=colour[name], label=name)
        if (pipeline, patch) in per_core:
            ax.plot(workers, [w * per_core[(pipeline, patch)] for w in workers], ":", color=colour[name])
    ax.set_xlabel("DataLoader workers (one thread each)")
    ax.set_ylabel("samples/s, log (dotted: workers x the one-core rate)")
    ax.set_xticks(sorted({r["workers"] for r in rows}))
    ax.set_yscale("log")  # patches differ by an order of magnitude in rate
    ax.grid(True, alpha=0.3)
    ax.legend(title="pipeline, patch")
    ax.set_title(f"Augmentation throughput against workers ({result.get('cpu_count')} cores)")
    return save_figure(fig, stem)


def is_fed(results):
    """Which rows of the report's frame were fed by a real loader (``loader`` other than "none"; NaN or empty in runs
    older than the column: tensor-fed). The comparison tables and scaling plots keep the other rows."""
    if "loader" not in results:
        return results.index.to_series().map(lambda _: False)
    return results["loader"].fillna("none").astype(str).replace("", "none") != "none"


def loop_rows(results) -> list[list[str]]:
    """The loader-fed training rows of the bench's ``results`` (the report's frame), each beside the tensor-fed row
    of the same configuration: steps of the two and the share of the fed step spent waiting for data."""
    if results is None or "loader" not in results or results.empty:
        return []
    fed, ok = is_fed(results), results["error"].fillna("") == ""
    same = ["run_id", "model", "overrides", "input_shape", "batch", "mode", "device", "dtype", "exec_mode",
            "channels_last"]
    tensor = {tuple(str(v) for v in row[same]): row for _, row in results[ok & ~fed].iterrows()}
    out = []
    for _, row in results[ok & fed].iterrows():
        twin = tensor.get(tuple(str(v) for v in row[same]))
        ratio = row["step_ms"] / twin["step_ms"] if twin is not None and twin["step_ms"] else None
        out.append([row["model"], row["input_shape"], str(row["batch"]), row["device"], str(row["loader"]),
                    _number(row["workers"], "{:.0f}"), _number(None if twin is None else twin["step_ms"], "{:.1f}"),
                    _number(row["step_ms"], "{:.1f}"), _number(ratio),
                    f"{_number(row['data_wait'])} [{_number(row['data_wait_low'])}, {_number(row['data_wait_high'])}]",
                    str(row["run_id"])])
    return out


def shown(source: Path) -> str:
    """Where the run is, as the page names it: relative to the working directory where it lies under it (so a
    rebuild elsewhere writes the same bytes), else as given."""
    try:
        return str(Path(source).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(source)


def markdown(result: dict, source: Path, figure: list[Path], results=None) -> str:
    load = (f"load average before {result.get('load_average_before')}, after {result.get('load_average_after')}; "
            f"{result.get('cpu_count')} cores")
    parts = ["# The input pipeline: is my GPU starved?", "",
             f"From `{shown(source)}` (`python -m harness pipeline`, run `{result.get('id', source.parent.name)}`; {load}). "
             "Synthetic images and labels; nnU-Net v2's training transforms built by nnunetv2's own "
             "`nnUNetTrainer.get_training_transforms`, MONAI's tutorial chain by MONAI (docs/pipeline.md).", "",
             "## Samples per second on one CPU core", "",
             "One process, one thread; the median of the block rates with the 95% bootstrap interval of the median.",
             "", *rates_table(result), ""]
    if result.get("loader_scaling"):
        parts += ["## Throughput against DataLoader workers", "",
                  "`torch.utils.data.DataLoader(num_workers=w)`, each worker at one thread; \"of linear scaling\" is "
                  "the rate over w times the one-core rate at the same patch.", "", *scaling_table(result), ""]
        parts += [f"![throughput against workers]({p.name})" for p in figure if p.suffix == ".png"] + [""]
    parts += ["## Cores per GPU and epoch time", "", result.get("steps_note", ""), ""]
    if result.get("budget"):
        first = result["budget"][0]
        parts += [f"Cores needed = (batch / step time) / samples per second per core (linear scaling assumed; the "
                  f"table above shows how far it holds); epoch = {first['iterations']} iterations x max(step, batch / "
                  f"(rate x {first['cores']} cores)), limited by the longer side.", "", *budget_table(result), ""]
    else:
        parts += ["No committed training row matches a measured patch: nothing to budget.", ""]
    fed = loop_rows(results)
    if fed:
        parts += ["## In the loop: training fed by a real loader", "",
                  "`python -m harness bench --loader NAME --workers N`: each loader-fed training row beside the "
                  "tensor-fed row of the same configuration (nnU-Net's with and without data loading); data wait = "
                  "the share of the step blocked waiting for the next batch, mean over the throughput blocks [95% "
                  "interval].", "",
                  *_table(["variant", "input", "batch", "device", "loader", "workers", "tensor-fed step ms",
                           "loader-fed step ms", "ratio", "data wait", "run"], fed), ""]
    if result.get("findings"):
        parts += ["## Findings", "", *[f"- {f}" for f in result["findings"]], ""]
    parts += ["## External references (published, not measured here)", "",
              *[f"- [{name}]({url}): {text}." for name, url, text in ANCHORS], ""]
    return "\n".join(parts)


def write(out: Path, pipeline_root: Path, results=None) -> list[Path]:
    """``pipeline.md`` (and the workers figure, PNG and PDF, when the run measured a DataLoader's scaling) in ``out``
    from the last pipeline run under ``pipeline_root``; [] when there is none. ``results``: the report's frame of
    bench rows, for the loader-fed rows (optional)."""
    source = latest_run(pipeline_root)
    if source is None:
        return []
    result = load(source)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figure = workers_figure(result, out / FIGURE)
    page = out / PAGE
    page.write_text(markdown(result, source, figure, results))
    return [page, *figure]
