#!/usr/bin/env bash
# Wheels for the packages the GPU machine lacks (fvcore, monai, dynamic-network-architectures, nox and what they
# need beyond torch and numpy), built here into wheelhouse/ (ignored by git: carry it with the device tool's
# `carry`); scripts/gpu_checks.sh installs them there with pip --no-index --find-links wheelhouse.
# Usage: scripts/build_wheels.sh [PYTHON] (default: python). torch itself is never built: the GPU machine has its own.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python}
out=${WHEELHOUSE:-wheelhouse}
mkdir -p "$out"
"$python" -m pip wheel --wheel-dir "$out" --no-deps fvcore monai dynamic-network-architectures nox \
    iopath yacs portalocker termcolor tabulate argcomplete colorlog dependency-groups virtualenv distlib filelock \
    platformdirs
ls "$out"
