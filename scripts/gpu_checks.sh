#!/usr/bin/env bash
# The GPU checks of issue 10 in one prepared run, for a machine with one CUDA GPU and its own torch
# (the pure-Python tools installed beside it: fvcore, pytest-benchmark, pandas, matplotlib, hypothesis,
# tabulate, jinja2, nvidia-ml-py). Everything lands in results/ to be committed with the rebuilt report.
# Budget: about 12 minutes on an H200; pass MODELS to narrow the paper sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
models="${MODELS:-unet3d*}"
# 1. The timer against an independent back-to-back loop, on the four configurations where a synchronized
#    step had disagreed (target: every ratio within 2%).
python -m harness.validate --device cuda || echo "validate: some configuration outside 2% (see results/validation-cuda.json)"
# 2. The faithful fp32 eager rows and the best preset (CUDA graphs + bf16 + channels-last) at the paper
#    profile's points, as two runs of one sweep.
python -m pytest suites/test_benchmark_unet.py suites/test_benchmark_resnet_encoder.py -p no:cacheprovider -q \
    --profile paper --precision fp32 --models "$models" --run-id "gpu-paper-fp32-eager"
python -m pytest suites/test_benchmark_unet.py suites/test_benchmark_resnet_encoder.py -p no:cacheprovider -q \
    --profile paper --exec-mode best --models "$models" --run-id "gpu-paper-best"
# 3. Claims and the report from everything committed plus these runs.
python -m harness.claims
python -m harness.report
