"""``python -m harness <command>``: the one entry point for every command a user runs.

    list      the registered variants (the article's, peers, yours)
    show      a variant's constructor defaults, the article's claims, a probed envelope
    check     will MODEL run this input? the output shape (exit 0), or why not (exit 2)
    bench     the benchmark sweep (pytest with the packaged plugin)
    plan      what fits on a GPU, predicted on the CPU
    compare   two runs side by side: ratios with intervals, verdicts, changed work (no torch)
    report    rebuild results/report/ from committed runs (no torch)
    regress   this tree against a git ref or a committed baseline
    launch    a sweep in shards, on this machine's GPUs or CPU slots or as a SLURM job array, merged
    merge     merge run folders (e.g. a sweep's shards) into one run
    claims    rerun every claim of the article; writes results/claims.json
    validate  the timer's self-check against a loop that shares no timing code with it

``python -m harness COMMAND --help`` shows a command's options and the exit contract. Each command is
imported only when it runs, so ``compare`` and ``report`` never import torch.

MODEL is a registered variant (``python -m harness list``) or your own model as ``package.module:function``
or ``path/to/file.py:function`` (see harness.catalog.user).

Every command goes through ``run``, which holds the exit contract (harness.options, docs/options.md): a bad
option or input file (``OptionError``, ``InputFileError``) is one paragraph on stderr and exit 2; anything
unexpected is one line on stderr naming the log file its traceback was saved to (``harness-error-*.log`` in
``$HARNESS_ERROR_LOG_DIR``, else the system's temporary folder) and exit 4, never 1; Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import traceback
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from pathlib import Path

from harness.options import (EXIT_CODES_HELP, EXIT_FINDING, EXIT_NOTHING, EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE,
                             OptionError, report)

PROG = "python -m harness"
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it): not a finding, not a wrong input
ERROR_LOG_DIR = "HARNESS_ERROR_LOG_DIR"


@dataclass(frozen=True)
class Command:
    name: str
    target: str  # "module:function": the function takes argv (a list) and returns the exit status
    summary: str


COMMANDS = {c.name: c for c in (
    Command("list", "harness.cli:list_command", "the registered variants (the article's, peers, yours)"),
    Command("show", "harness.cli:show_command", "a variant's constructor defaults, the article's claims, a probed "
            "envelope"),
    Command("check", "harness.cli:check_command", "will MODEL run this input? the output shape, or why not"),
    Command("bench", "harness.cli:bench", "the benchmark sweep (pytest with the packaged plugin)"),
    Command("plan", "harness.planner.cli:main", "what fits on a GPU, predicted on the CPU"),
    Command("compare", "harness.evidence.compare:main", "two runs: ratios with intervals, verdicts, changed work "
            "(no torch)"),
    Command("report", "harness.report.__main__:main", "rebuild results/report/ from committed runs (no torch)"),
    Command("regress", "harness.evidence.regress.cli:main", "this tree against a git ref or a committed baseline"),
    Command("launch", "harness.launch.__main__:main", "a sweep in shards (local GPUs/CPU slots or SLURM), merged"),
    Command("merge", "harness.cli:merge_command", "merge run folders (e.g. a sweep's shards) into one run"),
    Command("claims", "harness.evidence.claims:main", "rerun every claim of the article; writes results/claims.json"),
    Command("validate", "harness.evidence.validate:main", "the timer's self-check against an independent loop"),
    Command("pipeline", "harness.pipeline.cli:main", "is the GPU starved? augmentation per CPU core, cores per GPU, "
            "epoch time"),
    Command("repro", "harness.repro.cli:main", "reproducible training: run-to-run, deterministic mode (CUDA predicted), "
            "what changes a result"),
)}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} COMMAND [OPTIONS]", "", "Benchmarking and reproducibility harness for the article's "
             "3D segmentation networks.", "", "commands:"]
    lines += [f"  {c.name:{width}s}  {c.summary}" for c in COMMANDS.values()]
    lines += ["", f"`{PROG} COMMAND --help` shows that command's options. Documentation: docs/options.md.", "",
              EXIT_CODES_HELP + "; 130 interrupted (Ctrl-C)."]
    return "\n".join(lines)


# --- the one wrapper every command runs in ----------------------------------------------------------------
def _load(target: str):
    module, function = target.split(":")
    return getattr(import_module(module), function)


@contextlib.contextmanager
def _one_paragraph_usage_errors():
    """argparse's refusals (an unknown option, a bad choice, a missing argument) as one paragraph with the way
    out, instead of the usage block and a second line."""
    original = argparse.ArgumentParser.error

    def error(parser, message):
        parser.exit(EXIT_USAGE, f"error: {parser.prog}: {message}. Way out: `{parser.prog} --help` lists its "
                                f"options.\n")

    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


def error_log_path() -> Path:
    """Where an unexpected error's traceback goes: $HARNESS_ERROR_LOG_DIR, else the system's temporary folder."""
    folder = Path(os.environ.get(ERROR_LOG_DIR) or tempfile.gettempdir())
    return folder / f"harness-error-{datetime.now().strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"


def save_traceback(command: str, argv: list[str], text: str) -> Path | None:
    """The traceback and what ran, in a new log file; None when no file could be written."""
    path = error_log_path()
    header = (f"command: {PROG} {command} {' '.join(argv)}\ncwd: {os.getcwd()}\npython: {sys.version.split()[0]} "
              f"({sys.executable}) on {platform.platform()}\ntime: {datetime.now().isoformat(timespec='seconds')}\n\n")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + text)
    except OSError:
        return None
    return path


def unexpected(command: str, argv: list[str], what: str, text: str) -> int:
    """One line on stderr naming the saved traceback; exit 4 (never 1: an unexpected error is no finding)."""
    path = save_traceback(command, argv, text)
    if path is None:  # nowhere to save it: the traceback itself, so that nothing is lost
        sys.stderr.write(text)
    where = f"the traceback is saved in {path}" if path else "no log file could be written, the traceback is above"
    print(f"error: unexpected {what} in `{PROG} {command}`; {where}. This is a fault of the harness or its "
          f"environment, not a finding: please report it with that file.", file=sys.stderr)
    return EXIT_UNEXPECTED


def _exit_status(stop: SystemExit) -> int:
    if stop.code is None:
        return EXIT_OK
    if isinstance(stop.code, int):
        return stop.code
    print(f"error: {stop.code}", file=sys.stderr)  # sys.exit("message"): a refusal in words
    return EXIT_USAGE


def run(name: str, argv: list[str]) -> int:
    """Run one command under the exit contract (harness.options; docs/options.md)."""
    argv = list(argv)
    try:
        with _one_paragraph_usage_errors():
            status = _load(COMMANDS[name].target)(argv)
        return EXIT_OK if status is None else int(status)
    except SystemExit as stop:
        return _exit_status(stop)
    except OptionError as error:  # InputFileError is one
        return report(error)
    except KeyboardInterrupt:
        print(f"interrupted: `{PROG} {name}` stopped (exit {EXIT_INTERRUPTED})", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `... | head`: the reader went away; say nothing more
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - the contract: every other error is unexpected
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return unexpected(name, argv, f"{type(error).__name__}" + (f" ({first})" if first else ""),
                          traceback.format_exc())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return EXIT_OK if argv else EXIT_USAGE
    if argv[0] not in COMMANDS:
        return report(OptionError(f"{argv[0]!r} is not a command of {PROG}. The commands: {', '.join(COMMANDS)}. "
                                  f"Way out: `{PROG} --help` says what each does."))
    return run(argv[0], argv[1:])


# --- list, show, check -------------------------------------------------------------------------------------
def _parser(name: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"{PROG} {name}", description=description, epilog=EXIT_CODES_HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def _model(reference: str) -> str:
    """A registered name as it is; a ``module:function`` reference registered first."""
    from harness.catalog.user import register_reference

    return register_reference(reference) if ":" in reference else reference


def _option_errors(function):
    """The catalog's KeyError (an unknown model) and ValueError (a bad --set value) are wrong input: exit 2."""
    try:
        return function()
    except (KeyError, ValueError) as error:  # OptionError is a ValueError
        raise OptionError(str(error.args[0] if error.args else error)) from None


def list_command(argv: list[str]) -> int:
    parser = _parser("list", "The registered variants: the article's, the follow-up's (UNet++), peers (MONAI, "
                     "nnU-Net) and yours; a variant whose library is missing says what to install.")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'unet3d*'")
    parser.add_argument("--model", action="append", default=[], metavar="REF", help="also list your model REF")
    args = parser.parse_args(argv)

    def listing() -> list[str]:
        from harness.catalog.registry import get_variant, list_models
        from harness.catalog.user import register_entry_points
        from harness.store.schema import SOURCE_LABELS

        register_entry_points()
        for reference in args.model:
            _model(reference)
        lines = []
        for name in list_models(args.pattern):
            variant = get_variant(name)
            missing = variant.unavailable_reason()
            state = f"  [unavailable: {missing}]" if missing else ""
            lines.append(f"{name:26s} {SOURCE_LABELS[variant.source]:10s} {variant.description}{state}")
        return lines

    lines = _option_errors(listing)
    if not lines:
        print(f"no variant matches {args.pattern!r}; `{PROG} list` shows them all", file=sys.stderr)
        return EXIT_NOTHING
    print("\n".join(lines))
    return EXIT_OK


def show_command(argv: list[str]) -> int:
    parser = _parser("show", "A variant's builder and constructor defaults, the article's claims about it, and "
                     "(for peers and your models) its envelope probed on the meta device.")
    parser.add_argument("model", help="a registered variant, or your model as module:function")
    args = parser.parse_args(argv)

    def describe() -> list[str]:
        from harness.catalog.registry import get_variant
        from harness.catalog.user import register_entry_points
        from harness.envelope import prober
        from harness.overrides import format_value
        from harness.store.schema import SOURCE_LABELS

        register_entry_points()
        variant = get_variant(_model(args.model))
        lines = [f"{variant.name}: {variant.description} ({SOURCE_LABELS[variant.source]})",
                 f"  builder: {variant.builder.__module__}.{variant.builder.__name__}"]
        lines += [f"  {key} = {format_value(value)}" for key, value in variant.defaults.items()]
        lines += [f"  article {c.where}: input {c.input_shape} -> {c.output_shape}" for c in variant.claims]
        missing = variant.unavailable_reason()
        if missing:
            lines.append(f"  unavailable here: it {missing}")
        elif variant.record.envelope is None:
            lines.append(f"  envelope (probed on the meta device): {prober(variant.name).rule().describe()}")
        return lines

    print("\n".join(_option_errors(describe)))
    return EXIT_OK


DEVICES = ("cpu", "cuda")


def check_command(argv: list[str]) -> int:
    parser = _parser("check", "Will MODEL run this input? Exit 0 printing the output shape, or exit 2 with one "
                     "paragraph: the constraint that breaks and a supported input nearby. Nothing is run.")
    parser.add_argument("model", help="a registered variant, or your model as module:function")
    parser.add_argument("--input", required=True, help="N,C,D,H,W (or N,C,H,W for 2D models)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="constructor override, e.g. --set base_c=32 --set layers=3,4,6,3")
    parser.add_argument("--mode", choices=("inference", "train"), default="inference")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="cpu (default) or cuda (matters for shortcut_type=A); no GPU is needed to ask")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    args = parser.parse_args(argv)

    def verdict():
        from harness.catalog.user import register_entry_points
        from harness.envelope import check
        from harness.overrides import parse_overrides, parse_shape

        register_entry_points()
        return check(_model(args.model), parse_shape(args.input), parse_overrides(args.set), args.mode,
                     args.device, args.precision)

    answer = _option_errors(verdict)
    if answer.supported:
        print(answer.output_shape)
        return EXIT_OK
    print(answer.message(), file=sys.stderr)
    return EXIT_USAGE


# --- merge -------------------------------------------------------------------------------------------------
def merge_command(argv: list[str]) -> int:
    from harness.store.merge import add_merge_command, run_merge_command

    parser = argparse.ArgumentParser(prog=PROG, add_help=False)
    add_merge_command(parser.add_subparsers(dest="command"))
    command = parser._subparsers._group_actions[0].choices["merge"]
    command.description = ("Merge run folders (e.g. a sweep's shards) into one run folder: every configuration "
                           "once, refused when a configuration was measured twice (unless --keep latest) or when "
                           "the runs come from different kinds of machine (unless --allow-mixed-machines).")
    command.epilog = EXIT_CODES_HELP
    return run_merge_command(parser.parse_args(["merge", *argv]))


# --- bench -------------------------------------------------------------------------------------------------
PLUGIN = "harness.pytest_plugin.plugin"
# pytest options whose value is a path: given as two words, pytest takes the path for a test path and makes
# its folder the rootdir, losing the project's pytest settings; they are passed on as --option=value.
PYTEST_PATH_OPTIONS = ("--benchmark-json", "--benchmark-storage", "--basetemp", "--junitxml", "--junit-xml",
                       "--confcutdir", "--rootdir", "-c", "--config-file", "--log-file", "--result-log")
# pytest's exit statuses in the one contract: 1 tests failed (a measurement failed) is a finding; 2 an
# interruption (130, unless the plugin refused an option: 2); 3 pytest's internal error; 4 a usage error;
# 5 nothing collected or nothing measured.
PYTEST_STATUS = {0: EXIT_OK, 1: EXIT_FINDING, 3: EXIT_UNEXPECTED, 4: EXIT_USAGE, 5: EXIT_NOTHING}


class _OptionCollector:
    """Stands in for pytest's parser so that the plugin's own ``add_options`` fills an argparse parser: bench's
    --help shows the harness's options as the plugin declares them, without starting pytest."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.parser, self.groups = parser, {}

    def getgroup(self, name: str, description: str = "", after=None):
        if name not in self.groups:
            self.groups[name] = _OptionGroup(self.parser.add_argument_group(description or name))
        return self.groups[name]

    def addoption(self, *names, **kwargs) -> None:
        self.getgroup("general").addoption(*names, **kwargs)

    def addini(self, *args, **kwargs) -> None:
        pass


class _OptionGroup:
    def __init__(self, group):
        self.group = group

    def addoption(self, *names, **kwargs) -> None:
        self.group.add_argument(*names, **kwargs)

    _addoption = addoption


def bench_parser() -> argparse.ArgumentParser:
    from harness.pytest_plugin.options import add_options

    parser = argparse.ArgumentParser(
        prog=f"{PROG} bench", add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=f"{PROG} bench [HARNESS OPTIONS] [PYTEST OPTIONS]",
        description="The benchmark sweep: pytest with the packaged plugin and its benchmark test. One row per "
                    "configuration in results/runs/<run-id>/results.csv (docs/results.md).\n\n"
                    f"  {PROG} bench --profile smoke --models unet3d      # one variant, about a minute on a CPU\n"
                    f"  {PROG} bench                                      # the default profile for this device",
        epilog="pytest's and pytest-benchmark's own options (-k, -x, --benchmark-json PATH, --benchmark-sort, ...) "
               f"pass through as well: `{PROG} bench --help-pytest` lists them all.\n\n{EXIT_CODES_HELP}. For "
               "bench: 1 when a configuration failed to measure (its row holds the error), 3 when nothing was "
               "collected or measured, 130 when interrupted (Ctrl-C).")
    parser.epilog = f"{_profiles()}\n\n{parser.epilog}"
    shown = parser.add_argument_group("help")
    shown.add_argument("-h", "--help", action="store_true", help="this help")
    shown.add_argument("--help-pytest", action="store_true", help="pytest's full help, its own options included")
    repeats = parser.add_argument_group("several processes")
    repeats.add_argument("--processes", metavar="K", help="run the sweep K times, each in a fresh process, and pool "
                         "them into one run (docs/compare.md): compare then measures the noise between processes. "
                         "Default: the profile's (5 for cpu and cpu-full, 3 for paper, else 1; 1 for a --shard); "
                         "--processes 1 for a single quick pass")
    add_options(_OptionCollector(parser))
    return parser


def _profiles() -> str:
    """The sweep profiles, each with its own description (harness.bench.profiles)."""
    import textwrap

    from harness.bench.profiles import PROFILES

    lines = ["profiles (--profile NAME; harness/bench/profiles.py):"]
    for name, profile in PROFILES.items():
        text = (getattr(profile, "description", "") or "") + (
            f" [{profile.processes} processes by default]" if profile.processes > 1 else "")
        lines += textwrap.wrap(text, width=110, initial_indent=f"  {name:11s} ", subsequent_indent=" " * 14) or [
            f"  {name}"]
    return "\n".join(lines)


def _value_options() -> set[str]:
    """Every option that takes a value: the harness's (as its plugin declares them) and pytest's path options."""
    names = set(PYTEST_PATH_OPTIONS)
    for action in bench_parser()._actions:
        if action.nargs != 0:
            names.update(o for o in action.option_strings if o.startswith("--"))
    return names


def _joined(argv: list[str]) -> list[str]:
    """``--runs-root DIR`` as ``--runs-root=DIR``: pytest takes a separate word that names an existing path for
    a test path, and would make its folder the rootdir (the project's pytest settings then lost)."""
    takes_value, out, i = _value_options(), [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out += argv[i:]
            break
        if arg in takes_value and i + 1 < len(argv):
            joiner = "=" if arg.startswith("--") else ""
            out.append(f"{arg}{joiner}{argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


class _PytestOutcome:
    """A plugin object handed to pytest.main: tells a real interruption from the plugin's refusal (both are
    pytest's status 2) and keeps an internal error's traceback."""

    def __init__(self):
        self.interrupted = False
        self.internal_error = ""

    def pytest_keyboard_interrupt(self, excinfo) -> None:
        if isinstance(excinfo.value, KeyboardInterrupt):
            self.interrupted = True

    def pytest_internalerror(self, excrepr, excinfo) -> None:
        self.internal_error = str(excrepr)


def _pooled_table(run_dir) -> None:
    """The table of a run pooled from several processes, as each process printed its own."""
    from harness.pytest_plugin.plugin import compact_table
    from harness.store.load import read_run

    print("\n".join([f"pooled over the processes ({run_dir / 'results.csv'}):", *compact_table(read_run(run_dir).rows)]))


def bench(argv: list[str]) -> int:
    """The benchmark sweep: pytest with the packaged plugin and its benchmark test, options passed through
    (``--profile``, ``--model``, ``--runs-root``, pytest's and pytest-benchmark's own); pytest's exit status
    mapped onto the contract."""
    options = argv[:argv.index("--")] if "--" in argv else argv
    if "-h" in options or "--help" in options:
        print(bench_parser().format_help())
        return EXIT_OK
    import pytest

    if "--help-pytest" in options:
        return int(pytest.main(["-p", PLUGIN, "--help"]))
    from harness.launch.repeats import split_processes

    # K > 1 processes (--processes K, or the profile's default): the K sweeps run there, each a
    # `python -m harness bench --processes 1`, and are pooled into one run.
    status, argv = split_processes(argv, show=_pooled_table)
    if status is not None:
        return status
    outcome = _PytestOutcome()
    # No testpaths: a sweep collects the packaged benchmark test alone, so the project's test folders (and their
    # conftest.py, which may import test-only packages) are not loaded, while its other pytest settings stay.
    paths = [] if any(a.startswith("testpaths") for a in options) else ["-o", "testpaths="]
    status = int(pytest.main(["-p", PLUGIN, "--bench", "-p", "no:cacheprovider", *paths, *_joined(argv)],
                             plugins=[outcome]))
    if status == 2:
        return EXIT_INTERRUPTED if outcome.interrupted else EXIT_USAGE
    if status == 3:
        return unexpected("bench", argv, "internal error in pytest", outcome.internal_error or
                          "pytest reported an internal error (INTERNALERROR lines above)\n")
    return PYTEST_STATUS.get(status, status)


if __name__ == "__main__":
    sys.exit(main())
