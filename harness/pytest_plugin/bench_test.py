"""The one benchmark test: every configuration of the sweep, every family, grouped by family. Collected
by the plugin when a sweep is asked for (``--bench``, ``--profile``, ``--models`` or ``--model``)."""


def test_benchmark(bench_spec, benchmark, bench_session):
    m = bench_session.measure(bench_spec, benchmark)
    # A wrong shape is an error row (harness.bench.spec.output_problem) decided before the row is written, and
    # fails the test there; this only guards that no such row ever passes.
    assert m.output_shape == m.expected_output_shape, "the output's shape is not the one the envelope predicts"
