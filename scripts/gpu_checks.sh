#!/usr/bin/env bash
# The GPU checks of issue 10 in one prepared run, for a machine with one CUDA GPU and its own torch
# (the pure-Python tools installed beside it: fvcore, pytest-benchmark, pandas, matplotlib, hypothesis,
# tabulate, jinja2, nvidia-ml-py). Everything lands in results/ to be committed with the rebuilt report.
# Budget: HARNESS_GPU_BUDGET_S (default 600 s, under the 11 minutes of a 15-minute loan); MODELS narrows the best
# preset's sweep, PAPER_MODELS the fp32 eager one (default: unet3d unet3d-resnet50).
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
# Afterwards: commit the runs, refit harness.memory.workspace.WORKSPACE_FACTORS (fit_workspace_factors, with the
# new rows added to harness/bench/data/), and report the predictor on them.
if [[ "${1:-}" == memory ]]; then
    step memory-peers python -m harness bench -q --profile memory --run-id "gpu-memory-peers"
    step memory-article-bf16 python -m harness bench \
        -q --profile paper --processes 1 --precision bf16 --models "${MEMORY_MODELS:-unet3d}" --run-id "gpu-memory-article-bf16"
    step memory-max-batch python -m harness bench \
        -q --profile memory-max --find-max-batch --run-id "gpu-memory-max-batch"
    step report python -m harness report
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

# The default run (issue 27, item 4): STAGES in value order for a short GPU loan (about 15 minutes, start-up
# included, on an H100 or an H200), each writing its files (results/runs/<run-id>/) before the next starts, so
# that a loan that ends early still brings back the most valuable evidence. A guard skips every stage that would
# start with less than its estimate left of HARNESS_GPU_BUDGET_S (default 600 s) and stops a running one at the
# budget (timeout; a killed sweep resumes with --resume); a summary of what ran, passed, failed and was skipped
# ends the run. DRY_RUN=1 prints each stage's command and the budget decisions without running anything (a
# simulated clock advances by each stage's estimate; suites/test_gpu_paths.py runs it on the CPU).
# Missing packages (fvcore, monai, dynamic-network-architectures, nox) travel as wheels: scripts/build_wheels.sh
# builds them here into wheelhouse/ (carry it with the device tool); stage 0 installs them with --no-index.
#   0 wheels        pip install --no-index --find-links wheelhouse (when wheelhouse/ is there)
#   1 validate      the timer against an independent back-to-back loop (results/validation-cuda.json)
#   2 paper-fp32    the faithful fp32 eager paper rows (64³ first) of unet3d, then of unet3d-resnet50
#   3 paper-best    the best preset (CUDA graphs + bf16 + channels-last) at the paper points
#   4 memory        the memory rows (--profile memory: peers at 32-128³), the planner's prediction beside them
#   5 repro         reproducibility checks (python -m harness repro), when the command exists
#   6 volume        the volume profile at fp32 eager
#   7 loader        training fed by a real loader (nnU-Net's or MONAI's augmentation) beside the tensor-fed rows
#   8 report        claims and the report (CPU only; always attempted while any budget is left)
budget=${HARNESS_GPU_BUDGET_S:-600}
dry=${DRY_RUN:-0}
clock=0 # the simulated clock of a dry run
reserve=30 # kept for claims and the report, which turn the measured stages into the report
ran=()
skipped=()
elapsed() { if [[ "$dry" == 1 ]]; then echo "$clock"; else echo "$SECONDS"; fi; }

# stage NAME ESTIMATE_S COMMAND...: run COMMAND when ESTIMATE_S fits in what is left of the budget, stopped at it.
stage() {
    local name=$1 estimate=$2 left status
    shift 2
    left=$((budget - $(elapsed)))
    if ((left - reserve < estimate)); then
        skipped+=("${name} (needs ~${estimate}s, ${left}s left)")
        echo "== gpu_checks stage ${name}: SKIPPED, needs ~${estimate}s and ${left}s of ${budget}s are left"
        return 0
    fi
    steps=$((steps + 1))
    echo "== gpu_checks stage ${name} (~${estimate}s, ${left}s left): $*"
    if [[ "$dry" == 1 ]]; then
        clock=$((clock + estimate))
        ran+=("${name}")
        return 0
    fi
    timeout --signal=INT --kill-after=20 "$left" "$@"
    status=$?
    if ((status == 124 || status == 137)); then
        failed+=("${name} (stopped at the budget)")
        echo "== gpu_checks stage ${name} STOPPED at the budget (${budget}s); its run resumes with --resume" >&2
    elif ((status != 0)); then
        failed+=("${name} (exit ${status})")
        echo "== gpu_checks stage ${name} FAILED with exit ${status}; going on" >&2
    else
        ran+=("${name}")
    fi
}

# has_command NAME: python -m harness NAME exists (DRY_RUN_HAS="repro ..." stands in for it in a dry run).
has_command() {
    if [[ -n "${DRY_RUN_HAS+set}" ]]; then [[ " ${DRY_RUN_HAS} " == *" $1 "* ]]; return; fi
    python -m harness --help 2>/dev/null | grep -qE "^  $1 "
}

# has_pipeline NAME: bench --loader NAME can run here (DRY_RUN_HAS="... nnunet" stands in for it in a dry run).
has_pipeline() {
    if [[ -n "${DRY_RUN_HAS+set}" ]]; then [[ " ${DRY_RUN_HAS} " == *" $1 "* ]]; return; fi
    python -c "import sys; from harness.pipeline.pipelines import available; sys.exit(1 if available('$1') else 0)" \
        >/dev/null 2>&1
}

if [[ -d wheelhouse ]]; then
    stage wheels 30 python -m pip install -q --no-index --find-links wheelhouse \
        fvcore monai dynamic-network-architectures nox
fi
stage validate 60 python -m harness validate --device cuda
# One process per paper stage (the paper profile's default is 3, docs/compare.md): the budget of a 15-minute loan.
for model in ${PAPER_MODELS:-unet3d unet3d-resnet50}; do
    stage "paper-fp32-${model}" 90 python -m harness bench \
        -q --profile paper --processes 1 --precision fp32 --models "$model" --run-id "gpu-paper-fp32-eager-${model}"
done
stage paper-best 120 python -m harness bench \
    -q --profile paper --processes 1 --exec-mode best --models "$models" --run-id "gpu-paper-best"
stage memory 120 python -m harness bench -q --profile memory --run-id "gpu-memory-peers"
plan_dir=${PLAN_OUT:-results/runs/gpu-memory-peers}
stage memory-plan 20 bash -c "mkdir -p '$plan_dir' && python -m harness plan --gpu '${PLAN_GPU:-h100}' --models 'unet3d*' \
    --json > '$plan_dir/plan-${PLAN_GPU:-h100}.json'"
if has_command repro; then
    stage repro 120 python -m harness repro --device cuda --models "${REPRO_MODELS:-unet3d,unet3d-resnet50}" \
        --size 32 --steps 3 --rounds 10 --run-id "gpu-repro"
else
    skipped+=("repro (python -m harness repro does not exist here)")
    echo "== gpu_checks stage repro: SKIPPED, python -m harness repro does not exist here"
fi
volume_models=(${VOLUME_MODELS:+--models "$VOLUME_MODELS"})
stage volume 150 python -m harness bench \
    -q --profile volume --precision fp32 "${volume_models[@]}" --run-id "gpu-volume-fp32-eager"
# Issue 28, item 4 (docs/pipeline.md): training fed by a real loader beside the tensor-fed rows, nnU-Net's own with
# and without data loading, over a short sweep of workers: LOADER_MODELS (default unet3d-resnet50) at the peers
# profile's GPU points (64³, batch 1 and 2, fp32 eager; the tensor-fed rows in both modes), each training point also
# fed by --loader LOADER (default nnunet where nnunetv2's trainer imports, else monai) with LOADER_WORKERS (default
# 0,4,12) DataLoader workers; every loader-fed row records the share of its step spent waiting for data. Needs
# nnunetv2 and batchgeneratorsv2 (or monai) there: carry them as wheels. NOT YET RUN ON A GPU: its time is
# unmeasured (4 tensor-fed and 6 loader-fed rows; the estimate is a guess).
loader=${LOADER:-}
if [[ -z "$loader" ]]; then
    for candidate in nnunet monai; do
        if has_pipeline "$candidate"; then loader=$candidate; break; fi
    done
fi
if [[ -n "$loader" ]]; then
    stage loader 90 python -m harness bench -q --profile peers --precision fp32 \
        --models "${LOADER_MODELS:-unet3d-resnet50}" --loader "$loader" --workers "${LOADER_WORKERS:-0,4,12}" \
        --run-id "gpu-loader-${loader}"
else
    skipped+=("loader (neither nnunetv2 nor monai imports here)")
    echo "== gpu_checks stage loader: SKIPPED, neither nnunetv2 nor monai imports here"
fi
reserve=0
stage claims 10 python -m harness claims
stage report 20 python -m harness report

echo "== gpu_checks summary (budget ${budget}s, $(elapsed)s used$([[ "$dry" == 1 ]] && echo ', dry run'))"
echo "ran: ${ran[*]:-none}"
printf 'skipped: %s\n' "${skipped[@]:-none}"
printf 'failed: %s\n' "${failed[@]:-none}"
if ((${#failed[@]} > 0)); then
    printf -v names '%s, ' "${failed[@]}"
    echo "gpu_checks: ${#failed[@]} of ${steps} stages failed: ${names%, }" >&2
    exit 1
fi
echo "gpu_checks: all ${steps} stages passed${skipped:+ (${#skipped[@]} skipped)}"
