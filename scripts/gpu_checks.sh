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

# 1. The timer against an independent back-to-back loop, on the four configurations where a synchronized
#    step had disagreed (target: every ratio within 2%; the ratios are in results/validation-cuda.json).
step validate python -m harness.evidence.validate --device cuda
# 2. The faithful fp32 eager rows and the best preset (CUDA graphs + bf16 + channels-last) at the paper
#    profile's points, as two runs of one sweep. A configuration whose measurement fails fails its test.
step paper-fp32-eager python -m harness bench \
    -q --profile paper --precision fp32 --models "$models" --run-id "gpu-paper-fp32-eager"
step paper-best python -m harness bench \
    -q --profile paper --exec-mode best --models "$models" --run-id "gpu-paper-best"
# 3. Claims and the report from everything committed plus these runs.
step claims python -m harness.evidence.claims
step report python -m harness.report

if ((${#failed[@]} > 0)); then
    printf -v names '%s, ' "${failed[@]}"
    echo "gpu_checks: ${#failed[@]} of ${steps} steps failed: ${names%, }" >&2
    exit 1
fi
echo "gpu_checks: all ${steps} steps passed"
