"""What changes a result: against the fp32 eager reference (default threads, contiguous memory), the deviation
of the outputs (inference) and of the loss and gradients (one training step) under each execution setting the
bench offers, and batch invariance (eval mode: sample i alone against sample i inside a batch).

Every deviation is a relative error, max |a - b| / max |ref| (over all gradients together for gradients, see
harness.repro.deviation.compare_state), held against the setting's stated tolerances (SETTINGS): what a reader
of a paper can expect to see when reproducing a number under that setting instead of the reference's. Each
setting builds fresh seeded workloads (harness.bench.workload.prepare), so every side starts from the same
weights and data.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch

from harness.bench.spec import BenchSpec
from harness.repro.deviation import anomaly, compare_state, compare_tensor
from harness.repro.steps import watching_losses


@dataclass(frozen=True)
class Setting:
    name: str
    outputs: float  # tolerances, relative error: inference outputs, ...
    loss: float | None  # ... the training step's loss ...
    grads: float | None  # ... and its gradients (relative to the largest gradient); None: not measured
    why: str  # where the tolerances come from
    devices: tuple[str, ...] = ("cpu", "cuda")

    @property
    def tolerances(self) -> dict:
        return {"outputs": self.outputs, "loss": self.loss, "grads": self.grads}


# fp32 rounds each operation to ~6e-8 relative; a reordered reduction (other threads, another memory layout,
# fused kernels) moves a deep network's output by 1e-7 to 1e-6. Gradients move more: a weight's gradient before
# a training-mode BatchNorm is a sum whose terms nearly cancel (BatchNorm's backward removes the per-channel
# mean), so rounding errors of the terms show relative to a small sum; at the small batches and sizes of a
# reproducibility check (few values per channel in the deepest layers) that reaches 1e-3 of the largest
# gradient in fp32. bf16 keeps 8 significant bits (unit roundoff 2^-9 ~ 2e-3): outputs move by about 1e-2, and
# gradients, by the same cancellation, agree in their order of magnitude only.
SETTINGS = (
    Setting("threads-1", 1e-5, 1e-5, 1e-2, "fp32, reductions split over 1 thread instead of the default"),
    Setting("channels-last", 1e-5, 1e-5, 1e-2, "fp32, other convolution kernels (channels-last memory format)"),
    Setting("bf16", 5e-2, 1e-2, 1.0, "bf16 autocast: 8 significant bits; gradients agree in order of magnitude"),
    Setting("compile", 1e-4, 1e-4, 1e-2, "fp32, torch.compile's fused kernels reorder arithmetic"),
    Setting("cudnn-benchmark", 1e-5, 1e-5, 1e-2, "fp32, cuDNN's autotuned convolution algorithms", ("cuda",)),
    Setting("batch-invariance", 1e-5, None, None, "eval mode: sample i alone vs inside a batch of 4; fp32 kernels may "
            "block differently by batch size, anything larger is the model mixing samples"),
)
SETTING_NAMES = tuple(s.name for s in SETTINGS)
INVARIANCE_BATCH = 4


@contextlib.contextmanager
def _threads(count: int | None):
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _inference(spec: BenchSpec, threads: int | None = None) -> torch.Tensor:
    from harness.bench.workload import prepare

    with _threads(threads):
        workload = prepare(replace(spec, mode="inference"))
        return workload.step().float().cpu()


def _training(spec: BenchSpec, threads: int | None = None) -> dict:
    """One training step's output, loss and gradients (taken after the step: the next step clears them)."""
    from harness.bench.workload import prepare

    with _threads(threads):
        workload = prepare(replace(spec, mode="train"))
        with watching_losses() as watch:
            out = workload.step()
        grads = {name: p.grad.detach().float().cpu() for name, p in workload.model.named_parameters()
                 if p.grad is not None}
    return {"out": out.float().cpu(), "loss": watch.losses[-1].float().cpu() if watch.losses else torch.tensor(float("nan")),
            "grads": grads}


def _variant_spec(spec: BenchSpec, name: str) -> tuple[BenchSpec, int | None]:
    """The spec (and thread count) of a setting."""
    if name == "threads-1":
        return spec, 1
    if name == "channels-last":
        return replace(spec, channels_last=True), None
    if name == "bf16":
        return replace(spec, precision="bf16"), None
    if name == "compile":
        return replace(spec, exec_mode="compile"), None
    if name == "cudnn-benchmark":
        return replace(spec, cudnn_benchmark=not spec.cudnn_benchmark), None
    raise ValueError(name)


def batch_invariance(spec: BenchSpec, batch: int = INVARIANCE_BATCH) -> dict:
    """Eval mode: each sample of a seeded batch alone against the same sample inside the batch."""
    from harness.bench.workload import _inputs, prepare

    spec = replace(spec, mode="inference", batch=batch)
    workload = prepare(spec)
    x, _ = _inputs(spec, spec.device)  # the workload's own seeded batch
    model = workload.model.eval()
    with torch.inference_mode():
        together = model(x).float().cpu()
        alone = torch.cat([model(x[i:i + 1]).float().cpu() for i in range(batch)])
    worst = {"rel": 0.0, "max_abs": 0.0, "sample": None, "equal": True}
    scale = float(together.abs().max())
    for i in range(batch):
        compared = compare_tensor(together[i], alone[i])
        if not compared["equal"]:
            worst["equal"] = False
            rel = compared["max_abs"] / scale if scale > 0 else float("inf")
            if rel >= worst["rel"]:
                worst.update(rel=rel, max_abs=compared["max_abs"], sample=i)
    return {"batch": batch, "outputs_rel": worst["rel"], "outputs_max_abs": worst["max_abs"],
            "worst_sample": worst["sample"], "bitwise_equal": worst["equal"]}


def _verdict(row: dict, setting: Setting) -> str:
    """within: every measured deviation at or below its tolerance; else beyond, naming what is past it."""
    measured = {q: row[f"{q}_rel"] for q in ("outputs", "loss", "grads") if row[f"{q}_rel"] is not None}
    past = [q for q, value in measured.items() if not value <= setting.tolerances[q]]
    return ("beyond: " + ", ".join(past)) if past else ("within" if measured else "failed")


def _deviations(spec: BenchSpec, name: str, reference: dict) -> dict:
    """One setting against the reference: the relative errors, the worst gradient, and any anomaly (values no
    rounding explains, harness.repro.deviation.anomaly)."""
    other_spec, threads = _variant_spec(spec, name)
    out = _inference(other_spec, threads)
    train = _training(other_spec, threads)
    grads = compare_state(reference["train_grads"], train["grads"], per_tensor_scale=False)
    anomalies = [f"{what} {text}" for what, text in (
        ("outputs", anomaly({"output": reference["out"]}, {"output": out})),
        ("loss", anomaly({"loss": reference["train_loss"]}, {"loss": train["loss"]})),
        ("gradients", anomaly(reference["train_grads"], train["grads"]))) if text]
    return {"outputs_rel": compare_tensor(reference["out"], out)["rel"],
            "loss_rel": compare_tensor(reference["train_loss"], train["loss"])["rel"],
            "grads_rel": grads["rel"], "grads_worst_tensor": grads["rel_tensor"], "anomaly": "; ".join(anomalies)}


def measure(spec: BenchSpec, names: tuple[str, ...], not_run: dict[str, str] | None = None) -> list[dict]:
    """One row per setting: deviations against the reference, the tolerance and the verdict, or why not run.
    A row with an anomaly is measured once more, and the row says whether it recurred; its verdict stays the
    first measurement's (an anomaly is reported, never replaced by a calmer rerun)."""
    not_run = dict(not_run or {})
    default_threads = torch.get_num_threads()
    if default_threads == 1:
        not_run.setdefault("threads-1", "not run: the default is already 1 thread")
    reference = None
    rows = []
    for setting in SETTINGS:
        if setting.name not in names:
            continue
        row = {"setting": setting.name, "tolerance": setting.tolerances, "why": setting.why, "status": "measured",
               "outputs_rel": None, "loss_rel": None, "grads_rel": None, "grads_worst_tensor": "", "anomaly": "",
               "verdict": "", "error": ""}
        if spec.device not in setting.devices:
            row.update(status=f"not run: {setting.name} applies on {' and '.join(setting.devices)} only")
            rows.append(row)
            continue
        if setting.name in not_run:
            row.update(status=not_run[setting.name])
            rows.append(row)
            continue
        try:
            if setting.name == "batch-invariance":
                result = batch_invariance(spec)
                row.update(outputs_rel=result["outputs_rel"], detail=result)
                row["verdict"] = _verdict(row, setting)
                rows.append(row)
                continue
            if reference is None:
                reference = {"out": _inference(spec), **{f"train_{k}": v for k, v in _training(spec).items()}}
            row.update(_deviations(spec, setting.name, reference))
            row["verdict"] = _verdict(row, setting)
            if row["anomaly"]:
                row["rerun"] = _deviations(spec, setting.name, reference)
                row["anomaly"] += ("; measured again: " + ("it recurred" if row["rerun"]["anomaly"] else
                                                          f"it did not recur (gradients {row['rerun']['grads_rel']:.3g}, "
                                                          f"outputs {row['rerun']['outputs_rel']:.3g} relative)"))
        except Exception as error:  # noqa: BLE001 - a setting that fails is a row with its error (convention 9)
            text = str(error).strip().splitlines()[0] if str(error).strip() else ""
            row.update(status="failed", error=f"{type(error).__name__}: {text}", verdict="failed")
        rows.append(row)
    return rows
