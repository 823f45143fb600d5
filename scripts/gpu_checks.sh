#!/usr/bin/env bash
# The GPU checks of issue 10 in one prepared run, for a machine with one CUDA GPU and its own torch
# (the pure-Python tools installed beside it: fvcore, pytest-benchmark, pandas, matplotlib, hypothesis,
# tabulate, jinja2, nvidia-ml-py). Everything lands in results/ to be committed with the rebuilt report.
# Budget: about 12 minutes on an H200; pass MODELS to narrow the paper sweep.
#
# Every step runs even when an earlier one failed (a failing validation or a configuration whose
# measurement fails its pytest test must not cost the other results, the claims or the report); the
# script then names the failed steps and exits 1. Exit 0 only when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
models="${MODELS:-unet3d*}"
steps=0
failed=()

# step NAME COMMAND...: run COMMAND, and record NAME with its exit status when it fails.
step() {
    local name=$1 status
    shift
    steps=$((steps + 1))
    echo "== gpu_checks step ${steps} (${name}): $*"
    "$@"
    status=$?
    if ((status != 0)); then
        failed+=("${name} (exit ${status})")
        echo "== gpu_checks step ${steps} (${name}) FAILED with exit ${status}; going on" >&2
    fi
}

# Issue 19, item 6: the memory predictor against measured peaks (docs/memory.md). Every CUDA row of every step
# carries predicted_peak_mb and predicted_floor_mb (simulated on the CPU, about a second per configuration), and
# the report's memory.md sets them beside peak_mem_mb; the paper sweep gives the article's variants at fp32.
# `scripts/gpu_checks.sh memory` runs these steps and the report INSTEAD of the steps below, so that neither run
# passes the 12 minutes: two peers (--profile memory: monai-basicunet and nnunet-plain at 32-128³, batch 1-4,
# fp32 and bf16, 80 configurations), the article's MEMORY_MODELS (default unet3d) in bf16 eager at the paper
# points (12 configurations), and --find-max-batch at 128³ in training for unet3d-resnet50, monai-basicunet and
# nnunet-plain (--profile memory-max, fp32 and bf16, 6 configurations; each row also carries predicted_max_batch,
# the memory model's largest batch beside the measured steady-state one, issue 25). Needs monai and
# dynamic-network-architectures (carry them as wheels). NOT YET RUN ON A GPU: its time on an H200 is unmeasured.
# Afterwards: commit the runs, refit harness.bench.memory_model.WORKSPACE_FACTORS (fit_workspace_factors, with the
# new rows added to harness/bench/data/), and report the predictor on them.
if [[ "${1:-}" == memory ]]; then
    step memory-peers python -m harness bench -q --profile memory --run-id "gpu-memory-peers"
    step memory-article-bf16 python -m harness bench \
        -q --profile paper --precision bf16 --models "${MEMORY_MODELS:-unet3d}" --run-id "gpu-memory-article-bf16"
    step memory-max-batch python -m harness bench \
        -q --profile memory-max --find-max-batch --run-id "gpu-memory-max-batch"
    step report python -m harness.report
    if ((${#failed[@]} > 0)); then
        printf -v names '%s, ' "${failed[@]}"
        echo "gpu_checks memory: ${#failed[@]} of ${steps} steps failed: ${names%, }" >&2
        exit 1
    fi
    echo "gpu_checks memory: all ${steps} steps passed"
    exit 0
fi

# Issue 26 (docs/repro.md): reproducible training on CUDA. `scripts/gpu_checks.sh repro` runs these steps INSTEAD of
# the steps below: run-to-run (two fresh processes, 3 steps), deterministic mode (run or raise, naming the operator;
# its cost in 10 interleaved rounds; two runs bitwise equal) held against the CPU's prediction (a disagreement is a
# finding, exit 1), and the settings (threads, channels-last, bf16, cudnn.benchmark, batch invariance) for
# REPRO_MODELS at 32³ (2D: 64²), batch 2; then torch.compile for unet3d alone. NOT YET RUN ON A GPU: its time on an
# H100/H200 is unmeasured (each check starts fresh processes; compile costs about a minute per step kind).
if [[ "${1:-}" == repro ]]; then
    step repro python -m harness repro --device cuda --models "${REPRO_MODELS:-unet2d,unet3d,unet3d-trilinear,unet3d-resnet50}" \
        --size 32 --steps 3 --rounds 10 --run-id "gpu-repro"
    step repro-compile python -m harness repro --device cuda --models unet3d --size 32 --checks settings \
        --settings compile --compile --predict none --run-id "gpu-repro-compile"
    if ((${#failed[@]} > 0)); then
        printf -v names '%s, ' "${failed[@]}"
        echo "gpu_checks repro: ${#failed[@]} of ${steps} steps failed: ${names%, }" >&2
        exit 1
    fi
    echo "gpu_checks repro: all ${steps} steps passed"
    exit 0
fi

# 1. The timer against an independent back-to-back loop, on the four configurations where a synchronized
#    step had disagreed (target: every ratio within 2%; the ratios are in results/validation-cuda.json).
step validate python -m harness.evidence.validate --device cuda
# 2. The faithful fp32 eager rows and the best preset (CUDA graphs + bf16 + channels-last) at the paper
#    profile's points, as two runs of one sweep. A configuration whose measurement fails fails its test.
step paper-fp32-eager python -m harness bench \
    -q --profile paper --precision fp32 --models "$models" --run-id "gpu-paper-fp32-eager"
step paper-best python -m harness bench \
    -q --profile paper --exec-mode best --models "$models" --run-id "gpu-paper-best"
# 2b. Whole-volume inference (issue 18, item 7): the volume profile (unet3d, unet3d-resnet50, nnunet-plain,
#     monai-basicunet; 1x192x192x192 and 1x192x320x320 in 128³ windows, overlap 0.5, Gaussian, sw batch 1, 2, 4)
#     at fp32 eager and with the best preset. Needs monai and dynamic-network-architectures beside torch (the GPU
#     image has neither: carry them as wheels). NOT YET RUN ON A GPU: its time on an H200 is unmeasured, so the
#     12-minute budget above does not yet account for it; VOLUME_MODELS narrows it (default: the profile's four).
volume_models=(${VOLUME_MODELS:+--models "$VOLUME_MODELS"})
step volume-fp32-eager python -m harness bench \
    -q --profile volume --precision fp32 "${volume_models[@]}" --run-id "gpu-volume-fp32-eager"
step volume-best python -m harness bench \
    -q --profile volume --exec-mode best "${volume_models[@]}" --run-id "gpu-volume-best"
# 3. Claims and the report from everything committed plus these runs.
step claims python -m harness.evidence.claims
step report python -m harness.report

if ((${#failed[@]} > 0)); then
    printf -v names '%s, ' "${failed[@]}"
    echo "gpu_checks: ${#failed[@]} of ${steps} steps failed: ${names%, }" >&2
    exit 1
fi
echo "gpu_checks: all ${steps} steps passed"
