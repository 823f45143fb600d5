"""The reproducibility checks rendered: the table the command prints and repro.md. Reads repro.json's plain
data only (no torch, no measuring); harness.report.reproducibility renders the report's page with it."""
from __future__ import annotations


def _g(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def _ops(operators: list[dict], where: str | None = None) -> str:
    return ", ".join(op["aten"] for op in operators if where is None or op["in"] == where)


def prediction_network_text(prediction: dict | None) -> str:
    """The network's part of the CUDA prediction: runs, or raises through which operators."""
    if not prediction:
        return "-"
    if prediction["raises_on_cuda"] is None:
        return f"not traced ({prediction['error']})"
    network = _ops(prediction["operators"], "network")
    return f"raises: {network}" if network else "runs"


def prediction_loss_text(prediction: dict | None) -> str:
    """The loss's (and optimizer's) part, and whether the per-element loss runs instead."""
    if not prediction or prediction["raises_on_cuda"] is None:
        return "-"
    loss = _ops(prediction["operators"], "loss or optimizer")
    if not loss:
        return "runs"
    per_element = prediction.get("per_element_loss")
    if per_element is None:
        return f"raises: {loss}"
    still = _ops(per_element["operators"], "loss or optimizer")
    return f"raises: {loss}; per-element loss: " + (f"raises: {still}" if still else "runs")


def run_to_run_text(r2r: dict | None) -> str:
    if r2r is None:
        return "-"
    if r2r["error"]:
        return f"error: {r2r['error']}"
    if r2r["equal"]:
        return f"bitwise equal ({r2r['steps']} step{'s' if r2r['steps'] != 1 else ''})"
    last = r2r["per_step"][-1]
    return f"differ: weights {_g(last['weights_rel'])} rel, loss {_g(last['loss_rel'])} rel after step {last['step']}"


def deterministic_text(det: dict | None) -> str:
    if det is None:
        return "-"
    if det["outcome"] == "raised":
        where = f", in the {det['raised_in']}" if det.get("raised_in") else ""
        text = f"raises ({det['operator']}{where})"
        if det.get("per_element_loss"):
            text += f"; per-element loss: {deterministic_text(det['per_element_loss'])}"
        return text
    if det["outcome"] == "error":
        return f"error: {det['error']}"
    equal = "bitwise equal" if det["bitwise_equal"] else "NOT equal"
    ratio = f"x{det['ratio']:.2f} step time" if det["ratio"] else "no timing"
    return f"runs, {ratio}, {equal}"

def setting_text(row: dict) -> str:
    if row["status"] != "measured":
        return row["status"] if row["status"] == "failed" else "not run"
    values = [_g(row[f"{q}_rel"]) for q in ("outputs", "loss", "grads") if row[f"{q}_rel"] is not None]
    mark = "" if row["verdict"] == "within" else " !"
    return "/".join(values) + mark


def table(result: dict) -> str:
    """One line per variant: the CUDA prediction, run-to-run, deterministic mode, each setting's deviations."""
    settings = []
    for record in result["variants"]:
        for row in record.get("settings") or ():
            if row["setting"] not in settings:
                settings.append(row["setting"])
    header = ["model", "input", "CUDA deterministic mode, predicted: network", "predicted: loss",
              "run-to-run (default mode)", f"deterministic mode ({result['device']})"] + settings
    rows = []
    for record in result["variants"]:
        spec = record["spec"]
        by_name = {row["setting"]: row for row in record.get("settings") or ()}
        rows.append([record["model"], f"{'x'.join(map(str, spec['input_shape']))} b{spec['batch']}",
                     prediction_network_text(record.get("prediction")), prediction_loss_text(record.get("prediction")),
                     run_to_run_text(record.get("run_to_run")),
                     deterministic_text(record.get("deterministic"))]
                    + [setting_text(by_name[s]) if s in by_name else "-" for s in settings])
    return _markdown_table(header, rows)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def predictions_table(result: dict) -> str:
    rows = []
    for p in result["predictions"]:
        ops = "; ".join(f"{op['aten']} [{op['phase']}, {op['in']}] <- {op['documented']}" for op in p["operators"])
        rows.append([p["model"], f"{'x'.join(map(str, p['input_shape']))} b{p['batch']}", p["traced_on"] or "-",
                     prediction_network_text(p), prediction_loss_text(p), ops or p["error"] or "-"])
    return _markdown_table(["model", "traced at", "on", "CUDA deterministic mode: network", "loss",
                            "operators [phase, where] <- documented entry"], rows)


def settings_table(result: dict) -> str:
    rows = []
    for record in result["variants"]:
        for row in record.get("settings") or ():
            tolerance = "/".join(_g(row["tolerance"][q], 1) for q in ("outputs", "loss", "grads"))
            measured = row["status"] == "measured"
            rows.append([record["model"], row["setting"], _g(row["outputs_rel"]), _g(row["loss_rel"]),
                         _g(row["grads_rel"]), row["grads_worst_tensor"] or "-", tolerance,
                         row["verdict"] or "-", row["error"] or row.get("anomaly") or ("" if measured else row["status"])])
    return _markdown_table(["model", "setting", "outputs rel", "loss rel", "grads rel", "worst gradient",
                            "tolerance (out/loss/grads)", "verdict", "note"], rows)


def steps_table(result: dict, key: str) -> str:
    rows = []
    for record in result["variants"]:
        check = record.get(key)
        check = check.get("run_to_run") if key == "deterministic" and check else check
        for step in (check or {}).get("per_step", ()):
            rows.append([record["model"], step["step"], repr(step["loss_a"]), "yes" if step["loss_equal"] else "no",
                         "yes" if step["weights_equal"] else "no", _g(step["weights_max_abs"], 3),
                         _g(step["weights_rel"], 3), step["weights_rel_tensor"] or "-",
                         f"{step['tensors_differing']}/{step['tensors']}"])
    return _markdown_table(["model", "step", "loss (run a)", "loss equal", "weights equal", "max abs", "max rel",
                            "tensor", "tensors differing"], rows)


def markdown(result: dict) -> str:
    env = result["environment"]
    options = result["options"]
    lines = [f"# Reproducibility checks ({result['device']})", "",
             f"torch {env.get('torch')}, {env.get('device_name')}, {env.get('threads')} threads, git "
             f"{str(env.get('git_commit'))[:12]}{' (dirty)' if env.get('git_dirty') else ''}; "
             f"{options.get('steps')} steps, {options.get('rounds')} timing rounds; {result.get('elapsed_s')} s. "
             "How to read it: docs/repro.md.", "",
             "## Summary", "", table(result), "",
             "Settings: relative errors max |a-b| / max |ref| of outputs/loss/gradients against fp32 eager; "
             "`!` marks a deviation past its tolerance.", "", "## Findings", ""]
    lines += [f"- {f}" for f in result["findings"]] or ["none"]
    lines += ["", "## Predicted on the CPU: does the training step raise on CUDA under deterministic mode?", "",
              "Traced operators held against `torch.use_deterministic_algorithms.__doc__` of the installed torch.",
              "", predictions_table(result), "",
              "## Run-to-run, default mode", "", steps_table(result, "run_to_run"), "",
              "## Deterministic mode", ""]
    for record in result["variants"]:
        det = record.get("deterministic")
        for label, outcome in ((record["model"], det), (f"{record['model']}, per-element loss",
                                                        (det or {}).get("per_element_loss"))):
            if outcome is None:
                continue
            timing = outcome.get("timing") or {}
            lines.append(f"- {label}: {deterministic_text({**outcome, 'per_element_loss': None})}"
                         + (f"; median step {timing['default_ms']:.1f} ms default, {timing['deterministic_ms']:.1f} "
                            f"ms deterministic ({timing['rounds']} interleaved rounds)" if timing else "")
                         + (f"; {outcome['message']}" if outcome.get("message") else "")
                         + (f"; way out: {outcome['way_out']}" if outcome.get("way_out") else "")
                         + f"; prediction: {outcome['prediction']}")
    lines += ["", steps_table(result, "deterministic"), "", "## What changes a result", "", settings_table(result), ""]
    return "\n".join(lines)
