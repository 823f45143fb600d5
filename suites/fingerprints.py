"""The faithfulness cases and their fingerprints: one place for the recorder and the tests.

``suites/golden/faithfulness.json`` holds fingerprints recorded FROM RUNNING THE ARTICLE'S CODE (never
from our models) by ``python suites/record_fingerprints.py``; ``test_reference_faithful`` holds our
models against them wherever the suite runs, and against the article's live code where it is present.

What a fingerprint holds, and how it is compared (``compare``), the same way on every machine:
- exact: state_dict keys, shapes and dtypes in order, module names, the seeded initial weights (sha256
  of each tensor's bytes as built: float32), work counts, stage-print bytes, failure types and messages,
  integer buffers (``num_batches_tracked``);
- outputs, gradients and running stats after the fixed passes of ``Run``: float64 sum, sum of absolute
  values, sum of squares and a few evenly spaced values, each within ONE relative tolerance, ``RTOL``,
  of its scale (see ``stats_differ``).

Another machine (CPU vendor, vector width, thread count) sums in another order. Two things keep that
from moving the checked numbers by more than ~1e-9 of their scale:
- every fingerprinted pass runs in float64 (``DTYPE``; the float32 weights and seeded inputs widened
  exactly). In float32 the reordering moves the last bits (~1e-7), and the train steps amplify that:
  recordings of the article's code on 2 threads and on 1 had gradients up to 600 times their scale apart;
- train-mode batch norm sees four values per channel or more where nothing bypasses it (CASES). With
  two (batch 2 at 1x1x1) it maps them to about +-1 whatever they are and its backward cancels: even in
  float64 the ResNets' gradients were 1e-6 to 3e-4 apart between thread counts and vector widths.
Measured against the recording (2 threads, AVX512): on 1 thread at most 7e-10, with ATen's AVX2 kernels
and MKL's AVX2 or compatible code paths at most 2e-9. RTOL = 1e-6 leaves a factor of 500 over that and
catches a wrong number: a residual scaled by 1.001 moves the outputs by 3e-3 or more and most gradients
by far more (``test_fingerprint_catches_a_planted_wrong_residual``). ``record_fingerprints`` refuses a
case whose recordings on two thread counts differ by more than ``AGREEMENT``.

What float64 cannot absorb is other initial weights. They are the RNG's float32 output, bit-identical
wherever torch draws with its vectorised RNG (AVX2 and AVX512 x86 CPUs, any vendor); under another torch,
or on a CPU where torch draws with its scalar code (no AVX2, e.g. ARM), they may differ in the last bits,
the sha256 check says so, and the outputs and gradients follow them (measured with torch's scalar RNG:
gradients up to twice their scale apart). There only a recording made with that RNG holds.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
from functools import cached_property
from pathlib import Path

import torch

import article_oracle
from harness.bench.counting import count_work

GOLDEN_PATH = Path(__file__).resolve().parent / "golden" / "faithfulness.json"
RECORD_COMMAND = "python suites/record_fingerprints.py"
DTYPE = torch.float64  # of every forward and backward pass that is fingerprinted (see the module docstring)
RTOL = 1e-6            # one relative tolerance for every float stat of every output, gradient and running stat
AGREEMENT = RTOL / 100  # the most two recordings (thread counts) may differ for a case to be recorded
DIGITS = 12            # significant digits kept of each float (rounding: 5e-12, far below RTOL)
OUTPUT_SAMPLES = 16  # evenly spaced values kept of each output
GRAD_SAMPLES = 2     # ... of each gradient and running stat

BOTTLENECK_50 = [3, 4, 6, 3]
# (id, article section, class name, constructor kwargs (block given by name), input for output checks)
# Batch 4 for the Bottleneck ResNets and encoders, whose layer4 is 1x1x1 at 16^3 with nothing around it:
# train-mode batch norm there sees four values per channel. With two their float64 gradients were 1e-6
# to 3e-4 apart between thread counts and vector widths, with four at most 2e-9 (see the docstring).
CASES = [
    ("unet2d", "unet2d", "UNet", dict(bilinear=True), (2, 1, 32, 48)),
    ("unet2d-transposed", "unet2d", "UNet", dict(bilinear=False, base_c=8), (2, 1, 33, 40)),
    ("unet3d", "unet3d", "UNet_3d", dict(bilinear=False), (2, 1, 16, 16, 16)),
    ("unet3d-trilinear", "unet3d", "UNet_3d", dict(bilinear=True, base_c=8), (2, 1, 17, 33, 17)),
    ("resnet50-3d", "resnet3d", "ResNet_3d",
     dict(block="Bottleneck", layers=BOTTLENECK_50, num_classes=3), (4, 1, 16, 16, 16)),
    ("resnet50-3d-A", "resnet3d", "ResNet_3d",
     dict(block="Bottleneck", layers=BOTTLENECK_50, num_classes=3, shortcut_type="A"), (4, 1, 16, 16, 16)),
    ("resnet18-3d-A-notop", "resnet3d", "ResNet_3d",
     dict(block="BasicBlock", layers=[2, 2, 2, 2], shortcut_type="A", include_top=False), (2, 1, 16, 16, 16)),
    ("unet3d-resnet50", "encoder", "UNet_3d_resnet_encoder",
     dict(block="Bottleneck", layers=BOTTLENECK_50, bilinear=False), (4, 1, 16, 16, 16)),
    ("unet3d-resnet50-A-in3", "encoder", "UNet_3d_resnet_encoder",
     dict(block="Bottleneck", layers=BOTTLENECK_50, bilinear=False, shortcut_type="A", in_channels=3),
     (2, 3, 16, 16, 32)),
    ("unet3d-resnet101", "encoder", "UNet_3d_resnet_encoder",
     dict(block="Bottleneck", layers=[3, 4, 23, 3], bilinear=False), (4, 1, 16, 16, 16)),
    ("unet3d-resnet152", "encoder", "UNet_3d_resnet_encoder",
     dict(block="Bottleneck", layers=[3, 8, 36, 3], bilinear=False), (4, 1, 16, 16, 16)),
]

# (id, class name, article section, kwargs): each prints five stage lines for STAGE_PRINT_INPUT.
STAGE_PRINT_CASES = [
    ("unet3d-transposed", "UNet_3d", "unet3d", dict(bilinear=False, base_c=4)),
    ("unet3d-trilinear", "UNet_3d", "unet3d", dict(bilinear=True, base_c=4)),
    ("resnet18-3d", "ResNet_3d", "resnet3d", dict(block="BasicBlock", layers=[1, 1, 1, 1])),
]
STAGE_PRINT_INPUT = (1, 1, 16, 32, 48)

# (id, article section, class name, kwargs, input shape): the article's model fails on it in eval mode.
FAILURES = [
    ("basicblock", "encoder", "UNet_3d_resnet_encoder", dict(block="BasicBlock", layers=[2, 2, 2, 2], bilinear=False),
     (1, 1, 16, 16, 16)),
    ("bilinear", "encoder", "UNet_3d_resnet_encoder", dict(block="Bottleneck", layers=[1, 1, 1, 1], bilinear=True),
     (1, 1, 16, 16, 16)),
    ("base_c", "encoder", "UNet_3d_resnet_encoder", dict(block="Bottleneck", layers=[1, 1, 1, 1], bilinear=False,
                                                         base_c=32), (1, 1, 16, 16, 16)),
    ("small", "unet3d", "UNet_3d", dict(base_c=2), (1, 1, 8, 16, 16)),     # too small to pool four times
    ("parity", "unet3d", "UNet_3d", dict(base_c=2), (1, 1, 16, 16, 17)),   # mixed parity: the padding quirk
    ("channels", "unet3d", "UNet_3d", dict(base_c=2), (1, 2, 16, 16, 16)),  # wrong channel count
    ("resnet-c3", "resnet3d", "ResNet_3d", dict(block="BasicBlock", layers=[1, 1, 1, 1]), (1, 3, 16, 16, 16)),
]
# Train mode, batch 1: x5 is 1x1x1, and batch norm needs more than one value per channel.
TRAIN_FAILURE = ("train-batch1", "unet3d", "UNet_3d", dict(base_c=2), (1, 1, 16, 16, 16))


def build(namespace: dict, class_name: str, kwargs: dict, seed: int = 0) -> torch.nn.Module:
    """``namespace[class_name](**kwargs)`` under ``torch.manual_seed(seed)``, the block looked up by name."""
    kwargs = dict(kwargs)
    if "block" in kwargs:  # the article's encoder section has no BasicBlock: section 2 supplies it
        blocks = namespace if kwargs["block"] in namespace else article_oracle.namespace("resnet3d")
        kwargs["block"] = blocks[kwargs["block"]]
    torch.manual_seed(seed)
    return namespace[class_name](**kwargs)


def silently(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def seeded_input(shape, seed: int) -> torch.Tensor:
    """Seeded float32 normal values (the RNG's own output: see the module docstring), widened to DTYPE."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(DTYPE)


class Run:
    """The fixed procedure every check applies to one freshly built model (ours or the article's).

    The model's initial state is taken as built (float32, for the structure part); then the model is
    converted to DTYPE, in which every pass runs. Seeded inputs (float32 draws, widened): 1 for the eval
    pass, 2 for the train step (loss: mean square of the output, backward, no optimizer step), 3 for the
    work count. The eval pass comes before the train step (which moves the running stats) whichever is
    asked for first.
    """

    def __init__(self, model: torch.nn.Module, input_shape: tuple):
        self.model, self.input_shape = model, tuple(input_shape)
        self.buffer_names = {name for name, _ in model.named_buffers()}
        self.module_names = [name for name, _ in model.named_modules()]
        self.built_dtypes = {k: v.dtype for k, v in model.state_dict().items()}
        model.to(DTYPE)
        # The initial state in DTYPE, which holds float32 values exactly: ``as_built`` gives back the bytes.
        # The parameters share storage with the model (no step is taken); the buffers, which the train
        # step moves, are copied.
        self.initial_state = {k: v.clone() if k in self.buffer_names else v for k, v in model.state_dict().items()}

    def as_built(self, key: str) -> torch.Tensor:
        """The initial ``key`` in the dtype the model was built with (float32 for weights and running stats)."""
        return self.initial_state[key].to(self.built_dtypes[key])

    @cached_property
    def eval_output(self) -> torch.Tensor:
        self.model.eval()
        with torch.no_grad():
            return silently(self.model, seeded_input(self.input_shape, 1))

    @cached_property
    def train_step(self) -> tuple[torch.Tensor, dict, dict]:
        """(output, {parameter: grad or None}, {buffer: value after the step})."""
        self.eval_output  # noqa: B018 - first, on the initial running stats
        self.model.train()
        out = silently(self.model, seeded_input(self.input_shape, 2))
        out.square().mean().backward()
        grads = {name: p.grad for name, p in self.model.named_parameters()}
        buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
        return out.detach(), grads, buffers

    @cached_property
    def work(self):
        return silently(count_work, self.model, seeded_input((1, *self.input_shape[1:]), 3))


# --- fingerprints --------------------------------------------------------------------------------

def _round(value: float) -> float:
    return float(f"{value:.{DIGITS}g}")


def tensor_stats(t: torch.Tensor, samples: int) -> list:
    """[numel, sum, sum of |x|, sum of x^2, *evenly spaced values] in float64; ["exact", *values] for integers."""
    t = t.detach()
    if not t.is_floating_point():
        return ["exact", *(int(v) for v in t.reshape(-1).tolist())]
    flat = t.reshape(-1).double()
    stats = [flat.sum().item(), flat.abs().sum().item(), flat.square().sum().item()]
    if flat.numel():
        last, k = flat.numel() - 1, min(samples, flat.numel())
        stats += flat[torch.tensor([i * last // max(k - 1, 1) for i in range(k)], dtype=torch.long)].tolist()
    return [flat.numel(), *(_round(v) for v in stats)]


def sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:16]


def structure_fingerprint(run: Run) -> dict:
    return {
        # [key, shape, dtype as built, "p"arameter or "b"uffer]: the train part lists gradients and buffers in this order
        "state_dict": [[key, list(t.shape), str(run.built_dtypes[key]).removeprefix("torch."),
                        "b" if key in run.buffer_names else "p"] for key, t in run.initial_state.items()],
        "modules": run.module_names,
        "init_sha256": [sha256(run.as_built(key)) for key in run.initial_state],
    }


def eval_fingerprint(run: Run) -> dict:
    return {"output": [list(run.eval_output.shape), tensor_stats(run.eval_output, OUTPUT_SAMPLES)]}


def train_fingerprint(run: Run) -> dict:
    out, grads, buffers = run.train_step
    return {
        "output": [list(out.shape), tensor_stats(out, OUTPUT_SAMPLES)],
        # In named_parameters and named_buffers order (see the names in the structure part); None: no gradient.
        "grads": [None if g is None else tensor_stats(g, GRAD_SAMPLES) for g in grads.values()],
        "buffers": [tensor_stats(b, GRAD_SAMPLES) for b in buffers.values()],
    }


def work_fingerprint(run: Run) -> dict:
    work = run.work
    return {"params_total": work.params_total, "params_used": work.params_used, "macs": work.macs,
            "macs_by_operator": dict(work.macs_by_operator), "uncalled_modules": list(work.uncalled_modules),
            "unsupported_ops": sum(work.unsupported_ops.values())}


PARTS = {"structure": structure_fingerprint, "eval": eval_fingerprint, "train": train_fingerprint,
         "work": work_fingerprint}


def case_spec(case) -> dict:
    """How a case is defined, stored beside its fingerprint so a changed case cannot pass on stale data."""
    _, section, class_name, kwargs, input_shape = case
    return {"section": section, "class": class_name, "kwargs": kwargs, "input_shape": list(input_shape)}


def stage_prints(model: torch.nn.Module, *, ours: bool) -> str:
    """What one eval forward of STAGE_PRINT_INPUT prints (ours with the stage-print switch on)."""
    out = io.StringIO()
    switch = contextlib.nullcontext()
    if ours:
        import reference_models

        switch = reference_models.stage_prints()
    with contextlib.redirect_stdout(out), switch:
        model.eval()(torch.randn(STAGE_PRINT_INPUT))
    return out.getvalue()


def failure(model: torch.nn.Module, input_shape, *, train: bool = False) -> list[str] | None:
    """[exception type's qualified name, message] of one forward pass, or None when it does not fail."""
    model.train(train)
    try:
        silently(model, torch.randn(input_shape))
    except Exception as error:  # noqa: BLE001 - the failure is what is recorded
        return [type(error).__qualname__, str(error)]
    return None


def load() -> dict:
    return json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))


# --- comparison ----------------------------------------------------------------------------------

class Mismatches(list):
    """What differs between a recorded fingerprint and ours, for one readable assertion."""

    def __str__(self):
        shown = "\n  ".join(self[:20])
        more = f"\n  ... and {len(self) - 20} more" if len(self) > 20 else ""
        return f"{len(self)} difference(s) from the article's fingerprints:\n  {shown}{more}"


def _deviations(expected: list, actual: list) -> list[tuple[str, float]]:
    """(stat, |difference| over the stat's scale) for two float tensor_stats of the same tensor.

    Each stat's scale: for a sum and the sum of |x|, the sum of |x| (a sum may cancel to ~0); for the
    sum of squares, itself; for a value, the tensor's root mean square. A stat whose scale is 0 (an
    all-zero tensor) must be equal: deviation 0 or infinity.
    """
    numel, _, abs_sum, sq_sum, *values = expected
    rms = math.sqrt(sq_sum / max(numel, 1))
    scales = [abs_sum, abs_sum, sq_sum] + [rms] * len(values)
    names = ["sum", "abs sum", "sum of squares"] + [f"value {i}" for i in range(len(values))]
    return [(name, abs(want - got) / scale if scale else (0.0 if want == got else math.inf))
            for name, want, got, scale in zip(names, expected[1:], actual[1:], scales)]


def stats_differ(expected: list, actual: list) -> str | None:
    """None when ``actual`` matches ``expected`` (both from tensor_stats) within RTOL, else why not."""
    if len(expected) != len(actual) or expected[0] != actual[0]:
        return f"{actual[0]} ({len(actual)} stats) != recorded {expected[0]} ({len(expected)} stats)"
    if expected[0] == "exact":
        return None if expected == actual else f"{actual[1:]} != recorded {expected[1:]}"
    for (name, deviation), want, got in zip(_deviations(expected, actual), expected[1:], actual[1:]):
        if deviation > RTOL:
            return f"{name} {got!r} != recorded {want!r} (off by {deviation:.2g} of its scale, tolerance {RTOL:.2g})"
    return None


def _tensor_entries(part: str, fingerprint: dict):
    """(path, tensor_stats or None) of every tensor in an eval or train part; path: "train/grads/INDEX"."""
    yield f"{part}/output", fingerprint["output"][1]
    for field in ("grads", "buffers"):
        for index, stats in enumerate(fingerprint.get(field, [])):
            yield f"{part}/{field}/{index}", stats


def _names(structure: dict) -> dict[str, list[str]]:
    """The parameter and buffer names of a structure part, in the order of the train part's lists."""
    return {field: [key for key, _, _, kind in structure["state_dict"] if kind == flag]
            for field, flag in (("grads", "p"), ("buffers", "b"))}


def _where(part: str, path: str, names: dict) -> str:
    _, field, *index = path.split("/")
    return f"{part} {field[:-1]} {names[field][int(index[0])]}" if index else f"{part} output"


def worst_deviation(part: str, first: dict, second: dict, *, structure: dict) -> tuple[float, str]:
    """(the largest deviation, where) between two eval or train fingerprints of the same model: how far
    two recordings (say on two thread counts) are apart, in units of each stat's scale (see RTOL)."""
    names, worst = _names(structure), (0.0, "nowhere")
    for (path, a), (_, b) in zip(_tensor_entries(part, first), _tensor_entries(part, second)):
        if a is None or b is None or a[0] == "exact" or b[0] == "exact":
            if a != b:
                return math.inf, _where(part, path, names)
            continue
        name, deviation = max(_deviations(a, b), key=lambda item: item[1])
        if deviation > worst[0]:
            worst = deviation, f"{_where(part, path, names)} ({name})"
    return worst


def _first_difference(field: str, want: list, got: list) -> str:
    first = next((i for i, (w, g) in enumerate(zip(want, got)) if w != g), min(len(want), len(got)))
    return (f"{field}: {len(got)} entries, recorded {len(want)}; first difference at {first}: "
            f"{got[first] if first < len(got) else None!r} != recorded {want[first] if first < len(want) else None!r}")


def compare(part: str, expected: dict, actual: dict, *, structure: dict) -> Mismatches:
    """What differs between a recorded fingerprint part (see PARTS) and ours (see the module docstring).

    ``structure``: the recorded structure part (names for the messages).
    """
    found = Mismatches()
    if part == "structure":
        found += [_first_difference(field, expected[field], actual[field])
                  for field in ("state_dict", "modules") if expected[field] != actual[field]]
        if found:
            return found
        keys = [key for key, *_ in expected["state_dict"]]
        return Mismatches(f"initial {key}: sha256 {got} != recorded {want}"
                          for key, want, got in zip(keys, expected["init_sha256"], actual["init_sha256"]) if want != got)
    if part == "work":
        return Mismatches(f"{k}: {actual[k]!r} != recorded {expected[k]!r}" for k in expected if expected[k] != actual[k])
    if expected["output"][0] != actual["output"][0]:
        return Mismatches([f"{part} output shape {actual['output'][0]} != recorded {expected['output'][0]}"])
    names = _names(structure)
    for field in ("grads", "buffers"):
        if field in expected and not len(expected[field]) == len(actual[field]) == len(names[field]):
            found.append(f"{field}: {len(actual[field])}, recorded {len(expected[field])} for {len(names[field])} names")
    if found:
        return found
    for (path, want), (_, got) in zip(_tensor_entries(part, expected), _tensor_entries(part, actual)):
        where = _where(part, path, names)
        if (want is None) != (got is None):
            found.append(f"{where}: {'no' if got is None else 'a'} gradient, recorded {'none' if want is None else 'one'}")
        elif want is not None and (why := stats_differ(want, got)):
            found.append(f"{where}: {why}")
    return found
