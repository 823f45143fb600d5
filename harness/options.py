"""Option checks shared by every entry point: each refuses a bad value before any model is built, with
one paragraph naming the problem and the way out. CLIs turn an ``OptionError`` into exit status 2.

The one exit contract of every command (GUIDE.md convention 16; docs/options.md):
0 nothing wrong found; 1 a finding (a failed measurement, slower, a regression, changed work, a
configuration lost); 2 the input is wrong (an option, a path, a missing, damaged or mis-columned file, an
output that cannot be written): one paragraph, no traceback, nothing written; 3 nothing to judge;
4 an unexpected error (a one-line summary, the traceback saved to a log file): never a finding."""
from __future__ import annotations

import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FINDING = 1
EXIT_USAGE = 2
EXIT_NOTHING = 3
EXIT_UNEXPECTED = 4

EXIT_CODES_HELP = ("exit status: 0 nothing wrong found; 1 a finding (failed measurement, slower, regression, "
                   "changed work, a configuration lost); 2 wrong input (option, path or damaged file; nothing "
                   "written); 3 nothing to judge; 4 unexpected error (traceback saved to a log file)")


class OptionError(ValueError):
    """A bad option; its text is the whole message shown to the user."""


class InputFileError(OptionError):
    """A file the user handed in (a run's results.csv, details.jsonl, environment.json, a JSON baseline) is
    missing, unreadable, damaged or of the wrong format; its text names the file, what is wrong and a way out.
    Exit status 2, like every bad option."""


def report(error: Exception) -> int:
    """Print an option error as one paragraph on stderr and return the exit status for it."""
    print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
    return EXIT_USAGE



def require_positive(option: str, value, allow_zero: bool = False) -> None:
    if value is None:
        return
    low = 0 if allow_zero else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise OptionError(f"{option} must be an integer of at least {low}, not {value!r}. Way out: "
                          f"leave it out for the default, or give e.g. {option} {max(low, 3)}.")


def require_fraction(option: str, value: float, upper: float = 10.0) -> None:
    if not 0 <= value <= upper:
        raise OptionError(f"{option} must lie between 0 and {upper:g}, not {value!r}. Way out: e.g. {option} 0.1.")


def require_device(device: str, what: str = "--device cuda") -> None:
    """CUDA-only requests on a machine without CUDA."""
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise OptionError(f"{what} needs a CUDA GPU, but torch.cuda.is_available() is False here (torch "
                          f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}). Way out: run on "
                          f"a GPU machine whose torch has CUDA, or use --device cpu.")


def require_cuda_for(option: str, device: str, reason: str) -> None:
    if device != "cuda":
        raise OptionError(f"{option} needs --device cuda: {reason}. Way out: drop {option} on {device}.")


def require_run(runs_root: Path, run_id: str) -> Path:
    """The folder of a run to resume; lists the runs that exist when it does not."""
    folder = Path(runs_root) / run_id
    if (folder / "results.csv").is_file() or (folder / "environment.json").is_file():
        return folder
    existing = sorted(p.name for p in Path(runs_root).glob("*") if (p / "results.csv").is_file())
    known = ", ".join(existing[-8:]) if existing else "none"
    raise OptionError(f"--resume {run_id!r}: there is no run of that name under {runs_root} (runs there: "
                      f"{known}). Way out: give one of those names, or leave out --resume to start a new run.")


def require_new_run(runs_root: Path, run_id: str) -> None:
    folder = Path(runs_root) / run_id
    if folder.exists() and any(folder.iterdir()):
        raise OptionError(f"--run-id {run_id!r}: {folder} already holds a run, and a new run would mix its "
                          f"rows with that one's. Way out: --resume {run_id} to continue it, or choose "
                          f"another --run-id.")


def require_writable_output(option: str, path: Path, default, folder: bool = False) -> None:
    """Refuse an output (a file, or with ``folder`` a folder) that cannot be written, before anything runs:
    the nearest existing folder above it must be a folder we can write in (probed with a temporary file,
    removed at once). Nothing is created."""
    import tempfile

    path = Path(path)
    try:
        if folder and path.exists() and not path.is_dir():
            raise NotADirectoryError("a file, not a folder")
        if not folder and path.is_dir():
            raise IsADirectoryError("a folder, not a file")
        probe = path if folder and path.is_dir() else path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a folder")
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as error:
        what = "a folder" if folder else "a file in a folder"
        raise OptionError(f"{option} {path}: cannot be written ({getattr(error, 'strerror', None) or error}). Way "
                          f"out: give {what} you can write to (default {default}).") from None
