"""The reproducibility page (``reproducibility.md``): the variant x check table of the newest committed run of
``python -m harness repro`` (``results/repro/<run-id>/repro.json``; docs/repro.md), with the run's id, its
environment and the tolerances it judged against. Reads the run's plain data and renders it with the room's own
renderer (harness.repro.render); no torch, nothing measured.

"Newest" is the run's recorded start (``started``, UTC), then its folder name: run ids may be chosen freely
(``--run-id gpu-repro``), so the name alone does not order them.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.options import InputFileError
from harness.repro.render import predictions_table, table

PAGE = "reproducibility.md"
REQUIRED = ("device", "options", "environment", "predictions", "variants", "findings")


def load(path: Path) -> dict:
    """One run's repro.json; InputFileError (exit 2) when it is unreadable or not a repro record."""
    path = Path(path)
    way_out = (f"Way out: rerun `python -m harness repro`, or remove the folder {path.parent} if the run is not "
               f"wanted.")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputFileError(f"{path}: cannot be read as JSON ({error}). {way_out}") from None
    missing = [key for key in REQUIRED if key not in record] if isinstance(record, dict) else list(REQUIRED)
    if not isinstance(record, dict) or record.get("kind") != "repro" or missing:
        raise InputFileError(f"{path}: not a repro run (kind {record.get('kind') if isinstance(record, dict) else None!r}"
                             f"{', missing ' + ', '.join(missing) if missing else ''}). {way_out}")
    return record


def newest(repro_root: Path) -> tuple[Path, dict] | None:
    """The newest run under ``repro_root`` (its repro.json and record), or None when there is none."""
    runs = [(path, load(path)) for path in sorted(Path(repro_root).glob("*/repro.json"))]
    if not runs:
        return None
    return max(runs, key=lambda run: (str(run[1].get("started") or ""), run[0].parent.name))


def _environment(record: dict, run_id: str, where: str) -> list[str]:
    env, options = record["environment"], record["options"]
    commit = str(env.get("git_commit") or "unknown")[:12] + (" (uncommitted changes)" if env.get("git_dirty") else "")
    rows = [("run", f"`{run_id}` ({where})"), ("started", record.get("started") or "not recorded"),
            ("device", f"{record['device']}: {env.get('device_name') or 'unknown'}"),
            ("torch", f"{env.get('torch')}" + (f", CUDA {env['cuda']}, cuDNN {env.get('cudnn')}" if env.get("cuda")
                                                and record["device"] == "cuda" else "")),
            ("threads", f"{env.get('threads')} of {env.get('cpu_count')} CPUs"), ("git commit", commit),
            ("steps per run", options.get("steps")), ("timing rounds", options.get("rounds")),
            ("took", f"{record.get('elapsed_s')} s")]
    return ["| | |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]


def tolerances(record: dict) -> list[str]:
    """The tolerances the run judged against, as its rows recorded them (not the code's current values)."""
    seen: dict[str, dict] = {}
    for variant in record["variants"]:
        for row in variant.get("settings") or ():
            seen.setdefault(row["setting"], row)
    if not seen:
        return ["The run measured no setting."]

    def cell(value) -> str:
        return "-" if value is None else f"{value:g}"

    lines = ["| setting | outputs | loss | gradients | why |", "|---|---|---|---|---|"]
    for name, row in seen.items():
        bound = row["tolerance"]
        lines.append(f"| {name} | {cell(bound.get('outputs'))} | {cell(bound.get('loss'))} | "
                     f"{cell(bound.get('grads'))} | {row.get('why', '')} |")
    skipped = [f"`{name}` ({row['status'].removeprefix('not run: ')})" for name, row in seen.items()
               if row["status"].startswith("not run")]
    return lines + (["", "Not run: " + "; ".join(skipped) + "."] if skipped else [])


def markdown(record: dict, run_id: str, where: str) -> str:
    lines = ["# Reproducible training", "",
             "Can a training step be repeated bit for bit, can it run deterministically (on CUDA: predicted on the "
             "CPU), and which execution settings move the numbers. Rebuilt by `python -m harness report` from the "
             "newest run of `python -m harness repro`; how to read it: [docs/repro.md](../../docs/repro.md).", "",
             "## The run", "", *_environment(record, run_id, where), "",
             "## Variant x check", "", table(record), "",
             "Settings: relative errors max |a-b| / max |ref| of outputs/loss/gradients against fp32 eager; `!` marks a "
             "deviation past its tolerance.", "",
             "## Tolerances", "", *tolerances(record), "",
             "## Findings", ""]
    lines += [f"- {finding}" for finding in record["findings"]] or ["None."]
    lines += ["", "## Predicted on the CPU: deterministic mode on CUDA", "",
              "The training step's operators, traced, held against `torch.use_deterministic_algorithms.__doc__` of "
              "the run's torch.", "", predictions_table(record), ""]
    return "\n".join(lines)


def write(out: Path, repro_root: Path) -> list[Path]:
    """``out/reproducibility.md`` from the newest run under ``repro_root``; [] when there is none."""
    found = newest(repro_root)
    if found is None:
        return []
    path, record = found
    page, root = Path(out) / PAGE, Path(repro_root)
    # the run's path from the results folder on (results/repro/<id>/repro.json): the same bytes from any checkout
    page.write_text(markdown(record, path.parent.name, f"{root.parent.name}/{root.name}/{path.parent.name}/repro.json"))
    return [page]
