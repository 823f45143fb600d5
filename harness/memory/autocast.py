"""CUDA's autocast policy, applied to tensors of any device (``CudaAutocast``): a CPU-only torch cannot run
autograd on CUDA fake tensors, so the simulated step runs on CPU fake tensors with CUDA's autocast lists applied
at the call sites autocast acts on, with its cache of float32 weight casts; suites/test_memory_model.py holds it
to the real CUDA autocast kernels."""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_unflatten

# torch's documented CUDA autocast lists (docs: "Automatic Mixed Precision package", CUDA Op-Specific
# Behavior), by the name of the Python function or Tensor method called. suites/test_memory_model.py holds
# the operators the networks reach, and each family's whole forward pass, to the real CUDA autocast kernels.
LOWER_PRECISION = frozenset({
    "__matmul__", "__rmatmul__", "addbmm", "addmm", "addmv", "addr", "baddbmm", "bmm", "chain_matmul",
    "multi_dot", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "linear", "matmul", "mm", "mv", "prelu", "einsum", "scaled_dot_product_attention",
})
FP32 = frozenset({
    "__pow__", "__rdiv__", "__rpow__", "__rtruediv__", "acos", "asin", "binary_cross_entropy_with_logits",
    "cosh", "cosine_embedding_loss", "cdist", "cosine_similarity", "dist", "erfinv", "exp",
    "expm1", "group_norm", "hinge_embedding_loss", "kl_div", "l1_loss", "layer_norm", "log", "log10",
    "log1p", "log2", "margin_ranking_loss", "mse_loss", "multilabel_margin_loss", "multi_margin_loss",
    "nll_loss", "norm", "normalize", "pdist", "poisson_nll_loss", "pow", "reciprocal", "rsqrt", "sinh",
    "smooth_l1_loss", "soft_margin_loss", "softplus", "renorm", "tan", "triplet_margin_loss", "huber_loss",
    "logsumexp",
})
# (cross_entropy, listed in the docs, is left out: the CUDA kernels leave a half-precision input to it
# as it is; the harness's step hands it out.float() anyway.)
# Run in float32 by a dtype argument rather than by casting the input (no float32 copy of it is made).
FP32_BY_DTYPE = frozenset({"softmax", "log_softmax", "softmin", "cumprod", "cumsum", "prod", "sum"})
PROMOTE = frozenset({"addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "grid_sample", "index_put",
                     "scatter_add", "tensordot", "cat", "stack", "index_copy"})
_CASTABLE = (torch.float16, torch.bfloat16, torch.float32)


class CudaAutocast(TorchFunctionMode):
    """``torch.autocast("cuda", dtype)`` as it treats each call, applied to tensors of any device.

    Casts happen above autograd, where autocast's do, so the graph records them as autocast's; casts of
    float32 leaf tensors that require grad (the weights) are cached until the region ends, except under
    ``inference_mode``, where autocast caches nothing (as torch does)."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __exit__(self, *exc):
        self._cache.clear()
        return super().__exit__(*exc)

    def _cast(self, t, dtype: torch.dtype):
        if not isinstance(t, torch.Tensor) or t.dtype not in _CASTABLE or t.dtype == dtype:
            return t
        cacheable = (dtype == self.dtype and t.dtype == torch.float32 and t.requires_grad and t.is_leaf
                     and not t._is_view() and not torch.is_inference_mode_enabled())
        if not cacheable:
            return t.to(dtype)
        hit = self._cache.get(id(t))
        if hit is None or hit[0] is not t:
            hit = self._cache[id(t)] = (t, t.to(dtype))
        return hit[1]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in LOWER_PRECISION:
            target = self.dtype
        elif name in FP32:
            target = torch.float32
        elif name in FP32_BY_DTYPE:
            first = next((a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)), None)
            if first is not None and first.dtype in (torch.float16, torch.bfloat16) and kwargs.get("dtype") is None:
                kwargs = {**kwargs, "dtype": torch.float32}
            return func(*args, **kwargs)
        elif name in PROMOTE:
            flat = [a for a in tree_flatten((args, kwargs))[0]
                    if isinstance(a, torch.Tensor) and a.dtype in _CASTABLE]
            if not flat:
                return func(*args, **kwargs)
            target = flat[0].dtype
            for a in flat[1:]:
                target = torch.promote_types(target, a.dtype)
        else:
            return func(*args, **kwargs)
        flat, tree = tree_flatten((args, kwargs))
        # Last argument first, in the order autocast's C++ wrappers evaluate their arguments' casts.
        cast = [self._cast(a, target) for a in reversed(flat)][::-1]
        args, kwargs = tree_unflatten(cast, tree)
        return func(*args, **kwargs)
