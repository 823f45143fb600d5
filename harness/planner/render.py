"""The plan as text and as JSON (bookkeeping in harness.planner.search, rendering here)."""
from __future__ import annotations

from dataclasses import asdict

from harness.planner.units import GIB, MIB, _shape

def render(plan) -> str:
    patch = _shape(plan.patch) if plan.patch else "?"
    head = (f"Budget {plan.budget_text} = {plan.budget_bytes / GIB:.2f} GiB; plans keep {plan.margin:.0%} of it free "
            f"and so use at most {plan.limit_bytes / GIB:.2f} GiB. Predicted peak = torch.cuda.max_memory_allocated "
            f"of one step as the benchmark measures it (CUDA context not included); 'left' = budget - peak; "
            f"'domain': whether the convolution workspace model was fitted on such a step (docs/memory.md).")
    columns = (f"{'model':24s} {'mode':9s} {'dtype':5s} | {'batch @ ' + patch:>14s} {'peak MiB':>9s} {'left MiB':>9s}"
               f" | {'patch @ b' + str(plan.batch):>16s} {'peak MiB':>9s} {'left MiB':>9s} | domain")
    lines = [head, "", columns, "-" * len(columns)]
    notes = []
    for row in plan.rows:
        b, p = row.largest_batch, row.largest_patch
        cells = (f"{b.batch:>14d} {b.predicted_peak_mb:>9.0f} {b.left_mb:>9.0f}" if b else f"{'none':>14s} {'':>9s} {'':>9s}")
        cells += " | " + (f"{_shape(p.patch):>16s} {p.predicted_peak_mb:>9.0f} {p.left_mb:>9.0f}" if p
                          else f"{'none':>16s} {'':>9s} {'':>9s}")
        label = row.domain.split(":")[0].split(" (")[0] if row.domain else ""
        lines.append(f"{row.model:24s} {row.mode:9s} {row.precision:5s} | {cells} | {label}")
        if row.nnunet:
            n = row.nnunet
            text = [f"nnU-Net's heuristic for {row.model} ({row.mode}, {row.precision}) at {n['target_gb']} GB: "]
            if "batch_at_patch" in n:
                text.append(f"batch {n['batch_at_patch']} at {patch}")
            if n.get("patch_at_batch"):
                text.append(f"patch {_shape(n['patch_at_batch'])} at batch {plan.batch}")
            if "estimate_gb_of_largest_patch" in n:
                text.append(f"its estimate of our largest patch: {n['estimate_gb_of_largest_patch']} GB")
            notes.append(text[0] + "; ".join(text[1:]) + f" ({n['rule']}; mode and precision are not in it).")
        if row.domain and row.domain != "fitted":
            notes.append(f"{row.model} ({row.mode}, {row.precision}): the workspace model is {row.domain}")
        if row.note:
            notes.append(f"{row.model} ({row.mode}, {row.precision}): {row.note}")
    return "\n".join(lines + ([""] + notes if notes else []))


def plan_json(plan) -> list[dict]:
    out = []
    for row in plan.rows:
        item = asdict(row)
        item.update(budget_mb=round(plan.budget_bytes / MIB, 1), limit_mb=round(plan.limit_bytes / MIB, 1),
                    margin=plan.margin, patch=list(plan.patch or ()), batch=plan.batch)
        out.append(item)
    return out


def _render_fixed(items: list[dict]) -> str:
    lines = [f"{'model':24s} {'input':>14s} {'batch':>5s} {'mode':9s} {'dtype':5s} {'peak MiB':>9s} {'floor MiB':>9s}"
             + (f" {'left MiB':>9s}" if items and "left_mb" in items[0] else "")]
    for item in items:
        line = (f"{item['model']:24s} {'x'.join(map(str, item['input_shape'])):>14s} {item['batch']:>5d} "
                f"{item['mode']:9s} {item['precision']:5s} {item['predicted_peak_mb']:>9.1f} {item['predicted_floor_mb']:>9.1f}")
        if "left_mb" in item:
            line += f" {item['left_mb']:>9.1f}"
        lines.append(line + (f"  [{item['predicted_domain']}]" if item.get("predicted_domain") else ""))
    lines.append("peak: predicted torch.cuda.max_memory_allocated of the measured step (CUDA context not included); "
                 "floor: its live tensors alone; [fitted]: inside what the convolution workspace model was fitted on, "
                 "[extrapolated: why]: outside it (docs/memory.md).")
    return "\n".join(lines)
