"""nnU-Net's own heuristic (nnunetv2's ExperimentPlanner), shown beside the plan for nnU-Net's networks."""
from __future__ import annotations

from harness.planner.units import GIB, MAX_PATCH

# nnU-Net's heuristic (nnunetv2 ExperimentPlanner): the sum of convolution output elements of a patch
# (the network's compute_conv_feature_map_size) against a reference value that stands for 8 GB at batch 2,
# scaled with the target: 560e6 for the default planner's PlainConvUNet, 680e6 for the ResEnc M preset.
NNUNET_REFERENCE = {"PlainConvUNet": 560e6, "ResidualEncoderUNet": 680e6}
NNUNET_REFERENCE_GB, NNUNET_REFERENCE_BATCH = 8, 2


def _nnunet(model, plan, patch_answer) -> dict | None:
    """nnU-Net's heuristic for its own networks: its estimate of the answers and its own answers."""
    if model.variant.family != "nnunet":
        return None
    from harness.catalog.meta_probe import build_variant

    network = build_variant(model.variant, model.overrides, "meta")
    reference_value = NNUNET_REFERENCE.get(type(network).__name__)
    if reference_value is None or not hasattr(network, "compute_conv_feature_map_size"):
        return None
    target_gb = plan.budget_bytes / GIB
    reference = reference_value * target_gb / NNUNET_REFERENCE_GB

    def feature_map(patch) -> float:
        return float(network.compute_conv_feature_map_size(tuple(patch)))

    def estimate_gb(patch, batch) -> float:
        return NNUNET_REFERENCE_GB * feature_map(patch) / reference_value * batch / NNUNET_REFERENCE_BATCH

    out = {"reference_value": reference_value, "target_gb": round(target_gb, 2),
           "rule": f"sum of convolution outputs <= {reference_value:.3g} x target GB / {NNUNET_REFERENCE_GB} at batch "
                   f"{NNUNET_REFERENCE_BATCH}; batch = round(reference / estimate x {NNUNET_REFERENCE_BATCH})"}
    if plan.patch is not None:
        out["batch_at_patch"] = max(1, round(reference / feature_map(plan.patch) * NNUNET_REFERENCE_BATCH))
    sizes = [s for s in range(model.step, MAX_PATCH + 1, model.step)
             if feature_map((s,) * model.dims) * plan.batch / NNUNET_REFERENCE_BATCH <= reference]
    out["patch_at_batch"] = [sizes[-1]] * model.dims if sizes else None
    if patch_answer is not None:
        out["estimate_gb_of_largest_patch"] = round(estimate_gb(patch_answer.patch, patch_answer.batch), 2)
    return out
