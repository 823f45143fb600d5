"""Per-core rates: samples per second of one pipeline in this process on one core (torch threads 1, and the
BLAS/OpenMP pools limited to 1 through threadpoolctl when it is installed), from ``blocks`` blocks of ``k``
samples each after a warm-up; the median of the block rates with its bootstrap interval (harness.stats).
And the scaling of a torch DataLoader from 1 worker to N (each worker at one thread)."""
from __future__ import annotations

import contextlib
import os
import time

from harness.stats import median_interval


@contextlib.contextmanager
def one_core():
    import torch

    before = torch.get_num_threads()
    try:  # the other thread pools first: their limits record the settings before torch's is changed
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(limits=1)
    except ImportError:
        limits = None
    torch.set_num_threads(1)
    try:
        yield
    finally:
        if limits is not None:
            limits.restore_original_limits()
        torch.set_num_threads(before)  # last: restoring OpenMP's limit may have set torch's pool too


def block_rates(sample, blocks: int, k: int, warmup: int = 1, samples_per_call: int = 1) -> list[float]:
    """Samples per second of each of ``blocks`` back-to-back blocks of ``k`` calls (after ``warmup`` calls)."""
    for _ in range(warmup):
        sample()
    rates = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(k):
            sample()
        rates.append(k * samples_per_call / (time.perf_counter() - start))
    return rates


def per_core(pipeline, patch, blocks: int, k: int, warmup: int = 1) -> dict:
    """One pipeline at one patch on one core: a result row (an ``error`` instead when it raised)."""
    row = {"pipeline": pipeline.name, "source": pipeline.source, "patch": "x".join(map(str, patch)),
           "blocks": blocks, "samples_per_block": k * pipeline.samples_per_call, "threads": 1}
    try:
        with one_core():
            sample = pipeline.build(tuple(patch))
            rates = block_rates(sample, blocks, k, warmup, pipeline.samples_per_call)
    except Exception as error:  # a pipeline that fails is a row with its error (GUIDE convention 9)
        row.update(error=f"{type(error).__name__}: {error}"[:300])
        return row
    interval = median_interval(rates)
    median = sorted(rates)[len(rates) // 2] if len(rates) % 2 else sum(sorted(rates)[len(rates) // 2 - 1:
                                                                                len(rates) // 2 + 1]) / 2
    row.update(samples_per_s=median, ci_low=interval.low, ci_high=interval.high, level=interval.level,
               ms_per_sample=1000 / median, block_rates=rates, error="")
    return row


class _Samples:
    """A map-style dataset whose every item is one augmented sample of the pipeline (built lazily per worker)."""

    def __init__(self, pipeline, patch, length):
        self.pipeline, self.patch, self.length, self._sample = pipeline, tuple(patch), length, None

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        if self._sample is None:
            self._sample = self.pipeline.build(self.patch)
        self._sample()
        return index  # the sample stays in the worker: the rate is the augmentation's, not the pickling's


def _one_thread(_worker_id):
    import torch
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def loader_scaling(pipeline, patch, workers: list[int], samples: int) -> list[dict]:
    """Samples per second through ``torch.utils.data.DataLoader(num_workers=w)`` for each w: the time from the
    first item (workers started, pipelines built) to the last of ``samples`` items."""
    from torch.utils.data import DataLoader

    rows = []
    for w in workers:
        row = {"pipeline": pipeline.name, "patch": "x".join(map(str, patch)), "workers": w, "samples": samples}
        try:
            loader = DataLoader(_Samples(pipeline, patch, samples + 2 * w), batch_size=None, num_workers=w,
                                worker_init_fn=_one_thread, prefetch_factor=2, persistent_workers=False)
            it = iter(loader)
            for _ in range(w):  # each worker's first item: start-up and build, not counted
                next(it)
            start = time.perf_counter()
            for _ in range(samples):
                next(it)
            elapsed = time.perf_counter() - start
            del it
            row.update(samples_per_s=samples / elapsed, error="")
        except Exception as error:
            row.update(error=f"{type(error).__name__}: {error}"[:300])
        rows.append(row)
    return rows
