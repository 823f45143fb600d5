"""Work counts for one forward pass of one sample: MACs (fvcore), parameters registered and used.

Units: fvcore counts one fused multiply-add as one "flop"; we call that a MAC. FLOPs = 2 x MACs.

Policy for the operators fvcore has no handle for in these models (it would otherwise count them as
zero with a warning). They are given explicit handles, and the ops each handle covered are recorded:
- counted as 0 MACs (no multiply-adds, or bookkeeping): max-pool, the strided identity of shortcut A
  (avg_pool3d with kernel 1), aten::pad, aten::sub (size arithmetic of the padding), the residual add_;
- trilinear upsampling: 8 MACs per output element (fvcore counts bilinear as 4, one per corner);
- adaptive average pooling: 1 MAC per input element (as fvcore counts the 2D one);
- UNet++ with EfficientNet-B0 (MBConv): the activations SiLU/Swish (aten::silu, silu_) and sigmoid, the
  squeeze-excitation's channel scaling (aten::mul) and MBConv's residual aten::add: 0 MACs (elementwise,
  no multiply-add); their calls are listed like the others. Depthwise convolutions need no handle:
  fvcore's conv handle counts ``weight.numel()`` per output position, which is right for grouped ones.
Anything still unsupported is recorded in ``unsupported_ops``; modules the forward never calls are
recorded in ``uncalled_modules`` and their parameters are left out of ``params_used``.
"""
from __future__ import annotations

import contextlib
import math
from collections import Counter
from dataclasses import dataclass, field

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import elementwise_flop_counter, get_shape
from torch.utils.flop_counter import FlopCounterMode

ZERO_MAC_OPS = ("aten::max_pool2d", "aten::max_pool3d", "aten::avg_pool3d", "aten::pad", "aten::sub",
                "aten::add_", "aten::add", "aten::mul", "aten::silu", "aten::silu_", "aten::sigmoid")


def _upsample_trilinear(inputs, outputs):
    return 8 * math.prod(get_shape(outputs[0]))


def _handles(zero_mac_calls: Counter) -> dict:
    """Our handles; the zero-MAC ones tally the calls they cover into ``zero_mac_calls``."""
    def zero_mac(op):
        def handle(inputs, outputs):
            zero_mac_calls[op] += 1
            return 0
        return handle
    return {
        **{op: zero_mac(op) for op in ZERO_MAC_OPS},
        "aten::upsample_trilinear3d": _upsample_trilinear,
        "aten::adaptive_avg_pool3d": elementwise_flop_counter(1, 0),
    }
CONV_LINEAR_OPERATORS = ("conv", "linear")  # fvcore's by_operator names for these handles


@dataclass(frozen=True)
class WorkCount:
    macs: int
    macs_by_operator: dict = field(hash=False)
    params_total: int
    params_used: int
    uncalled_modules: tuple[str, ...]
    zero_mac_ops: dict = field(hash=False)  # ops counted as 0 MACs by policy -> calls in this pass
    unsupported_ops: dict = field(hash=False)

    @property
    def conv_linear_macs(self) -> int:
        return sum(self.macs_by_operator.get(op, 0) for op in CONV_LINEAR_OPERATORS)


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module):
    """Eval mode and no gradients for a counting pass; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _forward_with_hooks(model, sample, hooks) -> None:
    """One counting forward pass with ``(module, register_fn_name, hook)`` hooks attached."""
    handles = [getattr(module, register)(hook) for module, register, hook in hooks]
    try:
        with _evaluating(model):
            model(sample)
    finally:
        for handle in handles:
            handle.remove()


def called_modules(model: torch.nn.Module, sample: torch.Tensor) -> set[str]:
    """Names of the modules whose forward runs for ``sample``."""
    called: set[str] = set()
    _forward_with_hooks(model, sample, [
        (module, "register_forward_pre_hook", lambda *_, name=name: called.add(name))
        for name, module in model.named_modules()])
    return called


def count_work(model: torch.nn.Module, sample: torch.Tensor) -> WorkCount:
    """Count one forward pass of ``sample`` (batch 1) in eval mode."""
    if sample.shape[0] != 1:
        raise ValueError(f"count one sample: the input's batch must be 1, not {sample.shape[0]}")
    zero_mac_calls: Counter = Counter()
    analysis = FlopCountAnalysis(model, (sample,)).set_op_handle(**_handles(zero_mac_calls))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with _evaluating(model):
        macs = analysis.total()
    called = called_modules(model, sample)
    used = sum(p.numel() for name, module in model.named_modules() if name in called
               for p in module.parameters(recurse=False))
    return WorkCount(
        macs=int(macs),
        macs_by_operator={k: int(v) for k, v in sorted(analysis.by_operator().items())},
        params_total=sum(p.numel() for p in model.parameters()),
        params_used=int(used),
        uncalled_modules=tuple(sorted(n for n, _ in model.named_modules() if n not in called)),
        zero_mac_ops=dict(sorted(zero_mac_calls.items())),
        unsupported_ops=dict(sorted(analysis.unsupported_ops().items())),
    )


def flop_counter_macs(model: torch.nn.Module, sample: torch.Tensor) -> dict[str, int]:
    """PyTorch's own FlopCounterMode (2 FLOPs per MAC), halved, by operator; runs on ``meta`` too."""
    with _evaluating(model), FlopCounterMode(display=False) as counter:
        model(sample)
    return {str(op): int(flops) // 2 for op, flops in counter.get_flop_counts()["Global"].items()}


def analytic_conv_linear_macs(model: torch.nn.Module, sample: torch.Tensor) -> int:
    """MACs from each called layer's weight shape and its input/output sizes: a convolution does
    ``weight.numel()`` MACs per output position (per *input* position when transposed); a linear
    layer ``weight.numel()`` per sample."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Linear):
            positions = inputs[0].numel() // module.in_features
        elif isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
            positions = math.prod(inputs[0].shape[2:]) * inputs[0].shape[0]
        else:
            positions = math.prod(output.shape[2:]) * output.shape[0]
        total += module.weight.numel() * positions

    _forward_with_hooks(model, sample, [
        (module, "register_forward_hook", hook) for module in model.modules()
        if isinstance(module, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))])
    return total
