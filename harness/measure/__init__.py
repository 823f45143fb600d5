"""Measurement: the step (``workload``), the timing loops (``timing``), peak memory (``memory``), the
device's measured matmul peak (``peak``), and ``measure`` that runs them for one spec (``run``)."""
from .run import WorkCache, find_max_batch, measure, refusal, step_flops

__all__ = ["WorkCache", "find_max_batch", "measure", "refusal", "step_flops"]
