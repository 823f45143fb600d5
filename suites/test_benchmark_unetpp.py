"""Benchmarks: 3D UNet++ (plain, EfficientNet-B0 encoder with conv or MBConv decoder), inference and training step."""
from bench_plugin import run_benchmark
from harness.envelope import check

FAMILIES = ("unetpp3d", "unetpp3d-effb0")


def test_benchmark(bench_spec, benchmark, bench_session):
    m = run_benchmark(bench_spec, benchmark, bench_session)
    expected = check(bench_spec.model, bench_spec.full_input_shape, bench_spec.constructor_overrides).output_shape
    assert m.output_shape == expected
