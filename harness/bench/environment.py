"""Where a number came from: software versions, hardware, threads, git state and seeds."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from harness.bench.machine import machine_of

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED = 0


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_driver() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


def _nvml(index: int = 0) -> dict:
    """Clocks and power limit of the GPU at the start of the run, through NVML (nvidia-ml-py), since each
    changes the numbers. Empty values, with the reason in ``gpu_nvml``, where NVML cannot be read."""
    empty = {"gpu_sm_clock_mhz": "", "gpu_mem_clock_mhz": "", "gpu_max_sm_clock_mhz": "", "gpu_power_limit_w": ""}
    try:
        import pynvml
    except ImportError:
        return {**empty, "gpu_nvml": "nvidia-ml-py not installed"}
    try:
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            return {"gpu_sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
                    "gpu_mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
                    "gpu_max_sm_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
                    "gpu_power_limit_w": pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000,
                    "gpu_nvml": "ok"}
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError as error:
        return {**empty, "gpu_nvml": f"NVML error: {error}"}


def capture(device: str = "cpu") -> dict:
    """A flat dict of environment facts; every results row carries it."""
    cuda = device == "cuda" and torch.cuda.is_available()
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "",
        "cudnn": str(torch.backends.cudnn.version() or "") if cuda else "",
        "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32) if cuda else "",
        "matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32) if cuda else "",
        "device_name": torch.cuda.get_device_name() if cuda else _cpu_model(),
        "gpu_driver": _gpu_driver() if cuda else "",
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status),
        "seed": SEED,
        **(_nvml(torch.cuda.current_device()) if cuda else {}),
        "slurm_job_id": os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", ""),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID", ""),
        "node": platform.node(),
    }


def fingerprint(env: dict) -> tuple:
    """The facts that must match for two timings to be comparable (harness.bench.machine)."""
    return machine_of(env)
