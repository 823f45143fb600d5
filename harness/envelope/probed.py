"""The envelope of a model the harness did not hand-write (peers, your own): found by running it on the
``meta`` device, where a forward pass goes through PyTorch's own shape checks but computes nothing.

- Whether an input runs is answered by a meta forward pass of exactly that input (in train mode for
  training, so normalisation layers that need more than one value per channel refuse as they would),
  cached; so the verdict is exact for the shapes it is asked about.
- To explain a refusal and offer a nearby input, the model's *rule* is probed once per model and
  settings: the input channels (the ``in_channels`` argument, or the first of 1 to 4 that runs), a base
  size that runs, and, over cubic sizes 1 to ``PROBE_LIMIT``, the smallest size and the divisibility the
  sizes need (sizes ``n >= min_size`` with ``n % multiple == 0``). A suggestion is always checked by a
  meta forward of its own before it is offered.
"""
from __future__ import annotations

from typing import Any, Mapping

from harness.catalog.meta_probe import MetaProber
from harness.catalog.registry import Shape, Variant, get_variant
from harness.envelope.verdict import Refusal, Verdict
from harness.envelope.walkers import check_domain
from harness.overrides import freeze_value


_PROBERS: dict = {}


def prober(model: str | Variant, overrides: Mapping[str, Any] | None = None) -> MetaProber:
    """The (cached) meta-device prober of a variant with these constructor overrides."""
    variant = model if isinstance(model, Variant) else get_variant(model)
    overrides = dict(overrides or {})
    key = (variant.name, freeze_value(overrides))
    if key not in _PROBERS:
        args = variant.constructor_args(**overrides)
        argument = variant.record.channels_argument
        channels = args.get(argument) if argument else None
        hint = channels if isinstance(channels, int) and not isinstance(channels, bool) and channels > 0 else None
        _PROBERS[key] = MetaProber(lambda: variant.builder(**args), variant.spatial_dims, hint)
    return _PROBERS[key]


def check_probed(variant, overrides, shape, mode, suggest) -> Verdict:
    """Exact by construction: the verdict is a meta forward pass of this very input."""
    model, train = variant.name, mode == "train"
    try:
        check_domain(shape, 2 + variant.spatial_dims)
    except Refusal as refusal:
        return Verdict(model, shape, mode, False, constraint=refusal.constraint, reason=refusal.reason)
    probe = prober(variant, overrides)
    output, error = probe.run(shape, train)
    if output is not None:
        return Verdict(model, shape, mode, True, output)
    rule = probe.rule()
    n_batch, channels, *sizes = shape
    if rule.min_size is None:
        return Verdict(model, shape, mode, False, constraint="forward", reason=f"the forward pass fails ({error}), "
                       f"and {rule.describe()}", settings_constraint="forward")
    if channels != rule.channels:
        constraint, reason = "channels", f"the model takes {rule.channels} input channel(s), not {channels}"
    elif min(sizes) < rule.min_size:
        constraint, reason = "min-size", f"the model needs every spatial size at least {rule.min_size}"
    elif rule.multiple > 1 and any(n % rule.multiple for n in sizes):
        constraint, reason = "divisibility", f"the model needs every spatial size to be a multiple of {rule.multiple}"
    elif train and probe.run(shape, False)[0] is not None:
        constraint, reason = "train-batchnorm", "in training a normalisation layer refuses this input"
    else:
        constraint, reason = "forward", "the forward pass fails"
    reason += f" (probed on the meta device: {rule.describe()}; the model says: {error})"
    nearby = _nearest_probed(probe, rule, shape, train) if suggest else None
    return Verdict(model, shape, mode, False, constraint=constraint, reason=reason, suggestion=nearby)


def _nearest_probed(probe: MetaProber, rule, shape, train: bool) -> Shape | None:
    """The candidate that changes the fewest elements (then the least) among: the batch as given or 2,
    the probed channel count, and the sizes rounded up to the probed rule or set to the base size."""
    n_batch, _, *sizes = shape
    batches = {n_batch, 2} if train and n_batch < 2 else {n_batch}
    candidates = {(batch, rule.channels, *chosen) for batch in batches
                  for chosen in ([rule.round_up(n) for n in sizes], [rule.base_size] * len(sizes))}
    for candidate in sorted(candidates, key=lambda c: (sum(a != b for a, b in zip(c, shape)),
                                                       sum(abs(a - b) for a, b in zip(c, shape)), c)):
        if probe.run(candidate, train)[0] is not None:
            return candidate
    return None

