"""Benchmarks: peers (MONAI, nnU-Net's dynamic-network-architectures) and your own models (--model)."""
from bench_plugin import run_benchmark
from harness.envelope import check

FAMILIES = ("monai", "nnunet", "user")


def test_benchmark(bench_spec, benchmark, bench_session):
    m = run_benchmark(bench_spec, benchmark, bench_session)
    expected = check(bench_spec.model, bench_spec.full_input_shape, bench_spec.constructor_overrides).output_shape
    assert m.output_shape == expected
