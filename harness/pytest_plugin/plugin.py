"""The runner's pytest hooks (registered by the ``pytest11`` entry point of the same name). Each hook hands
its work to the one ``HarnessSession`` kept in ``config.stash``."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.options import OptionError
from harness.pytest_plugin.options import RunOptions, add_options
from harness.pytest_plugin.session import HarnessSession
from harness.store.csvfile import read_rows
from harness.store.schema import is_refusal

BENCH_TEST = str(Path(__file__).with_name("bench_test.py"))
SESSION = pytest.StashKey[HarnessSession]()


def _refuse_broken_pytest_benchmark() -> None:
    """pytest-benchmark 5.2.3 and older fail at collection under pytest 9.2 and later: say so, and how to fix it."""
    from importlib.metadata import version

    from packaging.version import Version

    plugin, runner = version("pytest-benchmark"), version("pytest")
    if Version(plugin) < Version("5.3") and Version(runner) >= Version("9.2"):
        raise pytest.UsageError(
            f"pytest-benchmark {plugin} does not work with pytest {runner}: pytest-benchmark 5.2.3 and older fail "
            "at collection under pytest 9.2 and later (\"'Function' object has no attribute '_nodeid'\"). Install "
            "pytest-benchmark 5.3 or later (`python -m pip install 'pytest-benchmark>=5.3'`, which needs pytest>=8.1), "
            "or keep pytest below 9.2 (`python -m pip install 'pytest<9.2'`).")


def pytest_addoption(parser):
    add_options(parser)


def pytest_configure(config):
    _refuse_broken_pytest_benchmark()
    try:
        session = HarnessSession(config, RunOptions.from_config(config))
        session.check()
    except (OptionError, ValueError) as error:  # OptionError is a ValueError; so is a malformed --set
        pytest.exit(f"error: {error}", returncode=2)
    config.stash[SESSION] = session
    if session.options.threads:
        import torch

        torch.set_num_threads(session.options.threads)
    if session.options.bench and BENCH_TEST not in config.args:
        # A sweep: collect the packaged benchmark test; alone, unless test paths were given explicitly.
        explicit = config.args_source == pytest.Config.ArgsSource.ARGS
        config.args[:] = [*config.args, BENCH_TEST] if explicit else [BENCH_TEST]


def pytest_generate_tests(metafunc):
    if "bench_spec" in metafunc.fixturenames:
        found = metafunc.config.stash[SESSION].specs
        metafunc.parametrize("bench_spec", found, ids=[s.label for s in found])


def pytest_collection_modifyitems(session, config, items):
    harness = config.stash[SESSION]
    harness.total = sum(1 for item in items if "bench_spec" in getattr(item, "fixturenames", ()))
    if harness.write_planned_keys(items):
        return  # the launcher's plan (--collect-only): no run is opened
    if harness.total and not harness.options.benchmarks_disabled:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        run_dir = harness.open_run(reporter.write_line if reporter else print)
        benchmark_session = getattr(config, "_benchmarksession", None)
        if benchmark_session is not None and not benchmark_session.json:
            # pytest-benchmark's raw JSON goes beside results.csv; a resumed run adds benchmark.2.json...
            attempt = 1 + sum(1 for _ in run_dir.glob("benchmark*.json"))
            benchmark_session.json = BenchmarkJsonPath(
                run_dir / ("benchmark.json" if attempt == 1 else f"benchmark.{attempt}.json"))


class BenchmarkJsonPath(os.PathLike):
    """Where pytest-benchmark writes its JSON, in the form every version accepts.

    pytest-benchmark up to 5.2.3 parses ``--benchmark-json`` with ``argparse.FileType('wb')`` and
    writes through ``with session.json as fh``; 5.3 and later take a path and call ``open(session.json,
    'wb')``. This is both: a path, and a context manager that opens the file only when the JSON is
    written (so a run that measures nothing leaves no empty file).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle = None

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __enter__(self):
        self._handle = self.path.open("wb")
        return self._handle

    def __exit__(self, *exc_info) -> None:
        self._handle.close()
        self._handle = None


@pytest.fixture(scope="session")
def bench_session(request, tmp_path_factory) -> HarnessSession:
    harness = request.config.stash[SESSION]
    harness.store(tmp_path_factory.mktemp("runs"))
    return harness


def pytest_sessionfinish(session):
    harness = session.config.stash.get(SESSION, None)
    if harness is None:
        return
    if harness.work_cache.peaks.measured() and harness.run_store is not None:
        harness.run_store.note(peak_tflops=harness.work_cache.peaks.measured())
    # Fail closed (docs/sweeps.md): a failed or unsettled configuration is a finding (exit 1; their tests failed
    # already); a sweep that measured nothing (everything refused) is "nothing to judge": pytest's exit status 5,
    # which ``python -m harness bench`` reports as the contract's 3.
    if session.exitstatus == pytest.ExitCode.OK:
        if harness.failed or harness.unsettled:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        elif harness.nothing_measured():
            session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    harness = config.stash.get(SESSION, None)
    if harness is None or not harness.started:
        return
    write = terminalreporter.write_line
    for line in summary_lines(harness):
        write(line)
    if harness.failed:
        write(f"harness: {harness.failed} of {harness.started} configuration(s) failed to measure; their error rows "
              f"are in {harness.run_store.csv_path}", red=True)
    if harness.unsettled:
        write(f"harness: {harness.unsettled} configuration(s) never settled in their warm-up: not measurements "
              f"(rows with warm=False; --resume {harness.run_store.run_id} measures them again)", red=True)
    if harness.nothing_measured():
        write("harness: nothing was measured (every configuration was refused): nothing to judge", red=True)
    if harness.run_store is not None and not harness.options.benchmarks_disabled and harness.run_store.csv_path.is_file():
        rows = read_rows(harness.run_store.csv_path).rows
        write(f"harness: results.csv: {harness.run_store.csv_path} ({len(rows)} row(s))")
        for line in compact_table(rows):
            write(line)


def summary_lines(harness) -> list[str]:
    """The closing count: every configuration of this session accounted for."""
    counts = [f"{harness.measured} measured", f"{harness.failed} failed", f"{harness.refused} refused",
              f"{harness.unsettled} unsettled"]
    if harness.resumed:
        counts.append(f"{harness.resumed} already in the run")
    lost = harness.total - harness.measured - harness.failed - harness.refused - harness.unsettled - harness.resumed
    if lost > 0:
        counts.append(f"{lost} not measured (interrupted, or a test error)")
    return [f"harness: {harness.total} configuration(s): {', '.join(counts)}"]


TABLE_COLUMNS = (("model", "model", "<"), ("input", "input_shape", "<"), ("batch", "batch", ">"), ("mode", "mode", "<"),
                 ("ms/step", "step_ms", ">"), ("samples/s", "samples_per_s", ">"), ("peak MB", "peak_mem_mb", ">"),
                 ("GMACs", "gmacs", ">"))


NUMBER_FORMATS = {"step_ms": "{:.1f}", "samples_per_s": "{:.2f}", "peak_mem_mb": "{:.1f}", "gmacs": "{:.3f}"}


def _cell(row: dict, column: str) -> str:
    value = row.get(column, "")
    if column in NUMBER_FORMATS and value not in ("", None):
        return NUMBER_FORMATS[column].format(float(value))
    return str(value)


def compact_table(rows: list[dict]) -> list[str]:
    """This run's rows as a compact table (the report makes the full one): one line per row, failed and refused
    rows marked, rows that are not measurements (no settled warm-up) flagged."""
    if not rows:
        return []
    body = []
    for row in rows:
        cells = [_cell(row, column) for _, column, _ in TABLE_COLUMNS]
        error = row.get("error", "")
        note = ("refused" if is_refusal(row) else "FAILED") if error else ("" if str(row.get("warm")) == "True"
                                                                            else "not warm")
        if row.get("loader") not in (None, "", "none"):  # a loader-fed twin of the row above it
            wait = row.get("data_wait")
            note = " ".join(filter(None, [f"fed by {row['loader']}, {row.get('workers')} workers" + (
                f", waiting {float(wait):.1%}" if wait not in (None, "") else ""), note]))
        body.append(cells + [note])
    header = [title for title, _, _ in TABLE_COLUMNS] + [""]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    aligns = [align for _, _, align in TABLE_COLUMNS] + ["<"]

    def line(cells):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths)).rstrip()

    return [line(header)] + [line(cells) for cells in body]


def pytest_benchmark_update_machine_info(config, machine_info):
    from harness.bench import environment

    machine_info["harness_environment"] = environment.capture(config.stash[SESSION].options.device)
