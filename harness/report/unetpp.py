"""The article's closing question (UNet++ with an EfficientNet-B0 encoder), answered from the committed
runs and ``results/claims.json``'s ``unetpp`` section. Reports never measure: every number here was
measured by a bench run or counted by ``python -m harness.evidence.claims``."""
from __future__ import annotations

import pandas as pd

MODELS = ("unetpp3d", "unetpp3d-effb0", "unetpp3d-effb0-mbconv", "unet3d", "unet3d-resnet50")
POINT = ("1x32x32x32", 2)  # the smallest input and batch at which all five train


def _m(n) -> str:
    return f"{n / 1e6:.2f} M"


def _rows(results: pd.DataFrame) -> pd.DataFrame:
    shape, batch = POINT
    rows = results[results["model"].isin(MODELS) & (results["input_shape"] == shape) & (results["batch"] == batch)
                   & (results["dtype"] == "fp32") & (results["exec_mode"] == "eager") & results["ok"]]
    # one run, so that every number compares on the same machine: the latest that measured the EfficientNet UNet++
    runs = rows[rows["model"].str.startswith("unetpp3d-effb0")]["run_id"]
    return rows[rows["run_id"] == max(runs)] if len(runs) else rows.iloc[0:0]


def build(claims: dict, results: pd.DataFrame) -> list[str]:
    params = claims.get("unetpp")
    lines = ["## The closing question: UNet++ with an EfficientNet-B0 encoder", "",
             "The document ends by asking how to give UNet++ an EfficientNet encoder and whether the convolution "
             "blocks must change too. Its answer is prose, a table and a 2D sketch that would not run. The harness "
             "builds the answer in 3D (`harness/models/unetpp.py`: UNet++ after Zhou et al. 2018, the encoder "
             "MONAI's `EfficientNetBNFeatures('efficientnet-b0', spatial_dims=3)`, decoder nodes the article's "
             "`DoubleConv_3d` or MONAI's `MBConvBlock` with the answer's settings) and measures it next to the "
             "article's unet3d and unet3d-resnet50.", ""]
    if not params:
        return lines + ["*No `unetpp` section in `results/claims.json`: install the unetpp extra (MONAI), then run "
                        "`python -m harness.evidence.claims --only unetpp`.*", ""]
    ref, var = params["reference"], params["variants"]
    rows = _rows(results)
    first = rows.drop_duplicates("model").set_index("model") if len(rows) else pd.DataFrame()
    lines += ["### Parameters and work", "",
              "Counted on the meta device (parameters) and by fvcore with the harness's handles (MACs of one forward "
              "pass of one 1×32³ sample; FLOPs = 2 × MACs). *Encoder alone* is the column X(i,0): for the "
              "EfficientNet variants MONAI's B0 stages without its classifier head, plus the five 1×1×1 channel "
              "adapters shown apart.", "",
              "| Variant | Whole network | Encoder alone | 1×1×1 adapters | Decoder | GMACs (1×32³) |",
              "|---|---|---|---|---|---|"]
    for name in MODELS:
        v = var.get(name, {})
        gmacs = f"{first.loc[name, 'gmacs']:.1f}" if name in first.index else "—"
        decoder = _m(v["decoder_nodes"]) if "decoder_nodes" in v else "—"
        adapters = _m(v["channel_adapters_1x1x1"]) if "channel_adapters_1x1x1" in v else "—"
        lines.append(f"| {name} | {_m(v['total'])} | {_m(v['encoder_backbone'])} | {adapters} | {decoder} | {gmacs} |")
    lines += ["", "### Speed and memory at one point", ""]
    if not len(rows):
        lines += [f"*No measured rows at {POINT[0]}, batch {POINT[1]}: run "
                  "`pytest suites/test_benchmark_unetpp.py --profile compare` (and the unet3d / unet3d-resnet50 suites "
                  "with `--resume`).*", ""]
        return lines + _verdicts(ref, var, None)
    devices = sorted(set(rows["device_name"]) | set(rows["cpu"]) - {""})
    lines += [f"Input {POINT[0]}, batch {POINT[1]}, fp32, eager; device: {', '.join(devices)} "
              f"({rows['device'].iloc[0]}), {int(rows['threads'].iloc[0])} threads, torch {rows['torch'].iloc[0]}; "
              f"runs {', '.join(sorted(set(rows['run_id'])))}. Throughput is time per step from back-to-back "
              "steps; training steps include backward and an SGD step; peak memory as the harness measures it on "
              "this device. Each number is few samples (the `compare` profile: one warm-up step, two latency "
              "samples, one throughput block), so differences under ~20% are within this machine's noise.", "",
              "| Variant | Mode | Latency (ms) | Step (ms) | Samples/s | Peak memory (MB) |", "|---|---|---|---|---|---|"]
    for mode in ("train", "inference"):
        for name in MODELS:
            r = rows[(rows["model"] == name) & (rows["mode"] == mode)]
            if len(r):
                r = r.iloc[-1]
                lines.append(f"| {name} | {mode} | {r['latency_ms']:.0f} | {r['step_ms']:.0f} | {r['samples_per_s']:.3f} "
                             f"| {r['peak_mem_mb']:.0f} |")
    lines.append("")
    if rows["device"].iloc[0] == "cpu":
        lines += ["Measured on a CPU (2 cores, shared with other work while it ran). GPU conclusions may differ: "
                  "depthwise 3D convolutions are notoriously slow on GPUs (cuDNN has few fast kernels for them), so "
                  "the EfficientNet variants' advantage in time may shrink or invert there even where their MACs "
                  "are far fewer; rerun `nox -s bench -- --models 'unetpp3d*'` on a GPU before concluding for one.", ""]
    return lines + _verdicts(ref, var, rows)


def _get(rows, name, mode, column):
    r = rows[(rows["model"] == name) & (rows["mode"] == mode)]
    return float(r[column].iloc[-1]) if len(r) else None


def _ratio(a, b) -> str:
    return f"{a / b:.2f}×" if a and b else "n/a"


def _verdicts(ref: dict, var: dict, rows) -> list[str]:
    plain, eff, mb = var["unetpp3d"], var["unetpp3d-effb0"], var["unetpp3d-effb0-mbconv"]
    lines = ["### The answer's claims", "",
             "| Claim of the answer | Verdict | Evidence |", "|---|---|---|"]
    lines.append("| The encoder's blocks must become MBConv (inverted residual, depthwise, squeeze-excitation, Swish) "
                 "| holds (by definition) | An EfficientNet encoder *is* its MBConv stages; MONAI builds B0's stem and "
                 "seven stages in 3D (widths 16–320, kernels 3/5, strides, expansion 1/6, SE 0.25, Swish) and the "
                 f"suites run them. Its five outputs (strides 2–32) give X(0..4,0); encoder alone "
                 f"{_m(eff['encoder_backbone'])} against {_m(plain['encoder_backbone'])} for the article's "
                 "DoubleConv_3d column. |")
    cost = [f"parameters {_m(eff['total'])} → {_m(mb['total'])} ({_ratio(mb['total'], eff['total'])})"]
    pays = None
    if rows is not None and len(rows):
        for column, label in (("gmacs", "GMACs"), ("step_ms", "train step (ms)"), ("peak_mem_mb", "train peak memory (MB)")):
            mode = "inference" if column == "gmacs" else "train"
            a, b = _get(rows, "unetpp3d-effb0", mode, column), _get(rows, "unetpp3d-effb0-mbconv", mode, column)
            if a and b:
                cost.append(f"{label} {a:.1f} → {b:.1f} ({_ratio(b, a)})")
        a, b = _get(rows, "unetpp3d-effb0", "inference", "step_ms"), _get(rows, "unetpp3d-effb0-mbconv", "inference", "step_ms")
        if a and b:
            cost.append(f"inference step {a:.0f} → {b:.0f} ms ({_ratio(b, a)})")
        cheaper = [(_get(rows, "unetpp3d-effb0-mbconv", m, c) or 0) < (_get(rows, "unetpp3d-effb0", m, c) or 0)
                   for m, c in (("inference", "gmacs"), ("train", "step_ms"), ("train", "peak_mem_mb"))]
        pays = mb["total"] < eff["total"] or any(cheaper)
    verdict = ("does not pay off here" if pays is False else "mixed" if pays else "not measured")
    lines.append("| The decoder's plain 3×3 blocks *may* become MBConv (lighter) | "
                 f"{verdict} | With the answer's settings (expansion 6 applied to each node's concatenated input, "
                 f"kernel 3, SE 0.25) the MBConv decoder is heavier, not lighter: {'; '.join(cost)}. The 1×1×1 "
                 "expansion of wide concatenations outweighs what the depthwise 3×3×3 saves. Accuracy is not measured "
                 "here. |")
    lines.append("| 1×1 convolutions adapt channels; interpolation adapts resolution | holds | Five 1×1×1 convolutions "
                 f"({_m(eff['channel_adapters_1x1x1'])}) map B0's 16, 24, 40, 112, 320 channels to the decoder's 32–512. "
                 "Within the nested decoder UNet++'s own ×2 upsampling suffices (five levels, one per B0 resolution); "
                 "interpolation is needed once, from stride 2 to the input size at the head. B0 halves five times, so "
                 "inputs must have every size n with ⌊n/2⌋ a multiple of 16 (32k or 32k+1), against multiples of 16 "
                 "for the plain UNet++ (`python -m harness check`). |")
    whole = plain["total"] / eff["total"]
    enc = plain["encoder_backbone"] / eff["encoder_backbone"]
    lines.append("| Parameters: VGG16 backbone 138 M vs EfficientNet-B0 5.3 M | holds only for 2D ImageNet classifiers "
                 f"| Counted: VGG16 classifier {_m(ref['vgg16_2d_classifier'])}, of which its 13 convolutions are "
                 f"{_m(ref['vgg16_2d_convs'])} (2D) or {_m(ref['vgg16_3d_convs_1ch'])} (3D, one channel): the 138 M is "
                 f"mostly fully connected layers no UNet++ has. EfficientNet-B0 classifier {_m(ref['effb0_2d_classifier'])} "
                 f"(2D, 3 channels, 1000 classes), {_m(ref['effb0_3d_classifier_1ch_2cls'])} in 3D with one channel; as "
                 f"the encoder used here (no head) {_m(eff['encoder_backbone'])}. In this 3D single-channel setting the "
                 f"encoder shrinks {enc:.1f}× (the article's DoubleConv_3d column {_m(plain['encoder_backbone'])}) and the "
                 f"whole network {whole:.1f}× ({_m(plain['total'])} → {_m(eff['total'])}), not 26×: the decoder "
                 f"({_m(eff['decoder_nodes'])}) then holds {eff['decoder_nodes'] / eff['total']:.0%} of the parameters. |")
    return lines + [""]
