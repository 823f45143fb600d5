"""The one benchmark test: every configuration of the sweep, every family, grouped by family. Collected
by the plugin when a sweep is asked for (``--bench``, ``--profile``, ``--models`` or ``--model``)."""


def test_benchmark(bench_spec, benchmark, bench_session):
    m = bench_session.measure(bench_spec, benchmark)
    assert m.output_shape == m.expected_output_shape, "the output's shape is not the one the envelope predicts"
