"""The checks in order, the findings rule, and the run folder: bookkeeping first (plain data, repro.json),
rendering last (harness.repro.render; GUIDE convention 12).

Findings (exit 1; docs/repro.md):
- a check that could not be measured (its row holds the error);
- two runs that should be bitwise equal and are not: deterministic mode on any device, the default mode on the
  CPU (whose kernels are deterministic, so a difference there is randomness no seed controls);
- a step that raises under deterministic mode on the CPU; on CUDA, an outcome (ran or raised) other than the
  CPU prediction, for the bench's step and for the per-element loss tried when the step raised inside its loss;
- a setting's deviation past its stated tolerance (harness.repro.settings.SETTINGS).
A step predicted to raise on CUDA is no finding: it is the answer to the question. Nor, on CUDA, is a
difference between two default-mode runs (atomic additions); its size is the measurement.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from harness.repro.plan import Plan

CHECKS = ("run-to-run", "deterministic", "settings")


def new_run_id(device: str) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{device}"


def run_checks(plan: Plan, steps: int, rounds: int, checks: tuple[str, ...], settings: tuple[str, ...],
               not_run: dict[str, str], timeout_s: float, options: dict,
               progress: Callable[[str], None] = lambda line: None) -> dict:
    """Every planned variant accounted for: one record each, its checks as plain data."""
    from harness.bench.environment import capture
    from harness.repro import deterministic, runtorun
    from harness.repro import settings as settings_check
    from harness.repro.trace import predict

    device = plan.specs[0].device if plan.specs else "cpu"
    result = {"kind": "repro", "version": 1, "device": device,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "options": options,
              "environment": capture(device),
              "checks": list(checks), "predictions": [], "variants": [], "findings": []}
    started = time.perf_counter()
    for spec in plan.predict:
        progress(f"predict {spec.model}: tracing its training step's operators")
        result["predictions"].append({"input_shape": list(spec.input_shape), "batch": spec.batch,
                                      **predict(spec).record()})
    by_model = {p["model"]: p for p in result["predictions"]}
    for spec in plan.specs:
        record = {"model": spec.model, "spec": spec.record(), "label": spec.label,
                  "prediction": by_model.get(spec.model), "run_to_run": None, "deterministic": None,
                  "settings": None}
        runs = ([{"deterministic": False}] if "run-to-run" in checks else []) + (
            [{"deterministic": True, "time_rounds": rounds}] if "deterministic" in checks else [])
        if runs:
            what = " then ".join(f"deterministic mode (its cost: {rounds} interleaved timing rounds)"
                                 if run["deterministic"] else "default mode" for run in runs)
            progress(f"{spec.model}: {steps} training steps in two fresh processes: {what}")
            measured = dict(zip((run["deterministic"] for run in runs),
                                runtorun.run_pairs(spec, steps, runs, plan.user_models, timeout_s)))
            if False in measured:
                record["run_to_run"] = measured[False][0]
            if True in measured:
                record["deterministic"] = deterministic.check(spec, steps, rounds, plan.user_models, record["prediction"],
                                                              timeout_s, measured[True])
        if "settings" in checks:
            progress(f"{spec.model}: settings {', '.join(settings)} against the fp32 eager reference")
            record["settings"] = settings_check.measure(spec, settings, not_run)
        result["variants"].append(record)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["findings"] = findings(result)
    return result


def _deterministic_findings(name: str, det: dict, device: str, predicted: bool | None) -> list[str]:
    out = []
    if det["outcome"] == "error":
        out.append(f"{name}: deterministic mode not measured: {det['error']}")
    elif det["outcome"] == "raised" and device == "cpu":
        out.append(f"{name}: the training step raises under deterministic mode on the CPU ({det['operator']})")
    elif det["bitwise_equal"] is False:
        out.append(f"{name}: two runs under deterministic mode are not bitwise equal")
    if det["prediction"] == "disagrees":
        out.append(f"{name}: on CUDA the step {det['outcome']} under deterministic mode, the CPU prediction "
                   f"said it {'raises' if predicted else 'runs'}")
    return out


def findings(result: dict) -> list[str]:
    """The findings rule (module docstring), one sentence each."""
    out = []
    device = result["device"]
    for record in result["variants"]:
        model = record["model"]
        r2r = record.get("run_to_run")
        if r2r is not None:
            if r2r["error"]:
                out.append(f"{model}: run-to-run not measured: {r2r['error']}")
            elif r2r["equal"] is False and device == "cpu":
                worst = max(r2r["per_step"], key=lambda r: r["weights_rel"])
                out.append(f"{model}: two default-mode runs on the CPU differ (randomness no seed controls?): after "
                           f"step {worst['step']} weights up to {worst['weights_rel']:.3g} relative "
                           f"({worst['weights_rel_tensor']}), losses {worst['loss_a']!r} vs {worst['loss_b']!r}")
        det = record.get("deterministic")
        if det is not None:
            prediction = record.get("prediction") or {}
            out += _deterministic_findings(model, det, device, prediction.get("raises_on_cuda"))
            if det.get("per_element_loss"):
                out += _deterministic_findings(f"{model} (per-element loss)", det["per_element_loss"], device,
                                               (prediction.get("per_element_loss") or {}).get("raises_on_cuda"))
        for row in record.get("settings") or ():
            if row["status"] == "failed":
                out.append(f"{model}: setting {row['setting']} failed: {row['error']}")
            elif row["verdict"].startswith("beyond"):
                values = ", ".join(f"{q} {row[f'{q}_rel']:.3g} > {row['tolerance'][q]:g}"
                                   for q in row["verdict"].removeprefix("beyond: ").split(", "))
                anomaly = f"; {row['anomaly']}" if row.get("anomaly") else ""
                out.append(f"{model}: {row['setting']} moves the result past its tolerance ({values}){anomaly}")
    return out


def write(result: dict, folder: Path) -> tuple[Path, Path]:
    """repro.json (plain data) and repro.md (rendered from it)."""
    from harness.repro.render import markdown

    folder.mkdir(parents=True, exist_ok=True)
    data, page = folder / "repro.json", folder / "repro.md"
    data.write_text(json.dumps(result, indent=1, default=_plain) + "\n")
    page.write_text(markdown(json.loads(data.read_text())))
    return data, page


def _plain(value):
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
