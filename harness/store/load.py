"""THE loader of a committed run folder (``results/runs/<run-id>/``): every command that reads runs (report,
merge, regress, compare) reads them through ``read_run``. No torch, no pandas.

``read_run(folder)`` returns a ``StoredRun``:

- ``rows``: the complete rows of ``results.csv`` in file order, each as the current harness writes it
  (text values; renamed columns under their new names and the columns older runs lack filled from
  ``schema.LEGACY_DEFAULTS``, see ``schema.with_legacy_defaults``); ``header``: the file's own columns;
- ``details``: the last ``details.jsonl`` record of each configuration, by ``BenchSpec.key`` (which equals
  ``schema.row_key(row)`` of its row), error records included; ``samples(key)`` gives its raw seconds;
- ``record``: ``environment.json`` as written (``{}`` when the run has none) and ``environment``: its
  first attempt's environment facts;
- ``warnings``: one sentence per file that lost lines, with the count and the file: a torn last record
  of ``results.csv`` (an interrupted run; ``csvfile.read_rows``), lines of ``details.jsonl`` that are not
  a record with a spec (garbage, or a line torn by an interruption). Callers print them (``warn``).

It raises ``harness.options.InputFileError`` (exit status 2; its text is one paragraph: the file, what is
wrong, a way out) when the run cannot be trusted at all: a missing folder or ``results.csv``, an
unreadable file, a ``results.csv`` that is not CSV text, has no complete header, lacks the key columns
(``schema.REQUIRED_COLUMNS``), or has a damaged record before its last one (only the last can be torn by an
interruption), and an ``environment.json`` that is not a JSON object. A run holding only a header loads
with no rows: what to do with nothing is the caller's call (exit 3, "nothing to judge").
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.bench.spec import BenchSpec
from harness.options import InputFileError
from harness.store.csvfile import read_rows
from harness.store.schema import ENV_COLUMNS, REQUIRED_COLUMNS, row_key, with_legacy_defaults

RESULTS_FILE, DETAILS_FILE, ENVIRONMENT_FILE = "results.csv", "details.jsonl", "environment.json"


@dataclass
class StoredRun:
    folder: Path
    header: list[str]  # results.csv's own columns, in its order
    rows: list[dict]  # complete rows, legacy defaults filled (text values)
    details: dict[tuple, dict] = field(default_factory=dict)  # last details.jsonl record per BenchSpec.key
    record: dict = field(default_factory=dict)  # environment.json as written; {} when absent
    warnings: list[str] = field(default_factory=list)  # dropped lines: how many, from which file

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def csv_path(self) -> Path:
        return self.folder / RESULTS_FILE

    @property
    def environment(self) -> dict:
        """The first attempt's environment facts (environment.json's ``environment``); {} without one."""
        env = self.record.get("environment")
        return env if isinstance(env, dict) else {}

    @property
    def row_environment(self) -> dict:
        """The environment columns of the first row: the facts of a run without an environment.json."""
        return {k: v for k, v in (self.rows[0] if self.rows else {}).items() if k in ENV_COLUMNS}

    def keyed(self):
        """(``row_key(row)``, row) pairs in file order."""
        return ((row_key(row), row) for row in self.rows)

    def samples(self, key: tuple) -> dict[str, list[float]]:
        """The raw seconds of a configuration (``raw_samples`` of its details record); empty lists without one."""
        return raw_samples(self.details.get(key, {}))

    def warn(self, stream=None) -> None:
        for warning in self.warnings:
            print(f"warning: {warning}", file=stream or sys.stderr)


def raw_samples(record: dict) -> dict[str, list[float]]:
    """A details record's raw seconds: ``latency_s`` (synchronized steps; older runs: ``times_s``) and
    ``step_s`` (each back-to-back block's time per step, block_s / block_steps)."""
    steps = record.get("block_steps") or 0
    return {"latency_s": list(record.get("latency_s") or record.get("times_s") or []),
            "step_s": [block / steps for block in record.get("block_s") or []] if steps else []}


def _unreadable(path: Path, error: OSError) -> InputFileError:
    return InputFileError(f"{path}: cannot be read ({error.strerror or error}). Way out: check the path and its "
                          f"permissions, or leave that run out.")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise _unreadable(path, error) from None


def _folder_of(folder) -> Path:
    path = Path(folder)
    if path.name == RESULTS_FILE and path.is_file():
        return path.parent
    if not path.exists():
        raise InputFileError(f"{path}: no such run folder. Way out: give a run folder that holds {RESULTS_FILE} "
                             f"(runs live under results/runs/), or a run id that exists there.")
    if not path.is_dir():
        raise InputFileError(f"{path}: not a run folder but a file. Way out: give the folder that holds "
                             f"{RESULTS_FILE}, {DETAILS_FILE} and {ENVIRONMENT_FILE}.")
    if not (path / RESULTS_FILE).exists():
        raise InputFileError(f"{path}: holds no {RESULTS_FILE}, so it is not a run (or its run never finished a "
                             f"configuration). Way out: give a run folder that holds one, or measure into it "
                             f"with `python -m harness bench --resume {path.name}`.")
    return path


def _read_results(path: Path) -> tuple[list[str], list[dict], list[str]]:
    data = _read_bytes(path)
    if b"\0" in data:
        raise InputFileError(f"{path}: not a CSV text file (it holds binary data). Way out: restore it from git "
                             f"(`git checkout -- {path}`) or leave that run out.")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputFileError(f"{path}: not UTF-8 CSV text (byte {error.start} cannot be decoded). Way out: "
                             f"restore it from git or leave that run out.") from None
    try:
        contents = read_rows(path)
    except ValueError as error:
        raise InputFileError(f"{error}. Way out: restore the file from git (`git checkout -- {path}`), or "
                             f"delete the damaged record and `--resume` the run to measure it again.") from None
    if not contents.header:
        raise InputFileError(f"{path}: {'empty' if not data.strip() else 'no complete header line'}, so no column "
                             f"can be read. Way out: restore it from git, or delete the run folder and measure it "
                             f"again.")
    missing = [c for c in REQUIRED_COLUMNS if c not in contents.header]
    if missing:
        shown = ", ".join(contents.header[:8]) + (", ..." if len(contents.header) > 8 else "")
        raise InputFileError(f"{path}: not a harness results file: its header lacks the column(s) "
                             f"{', '.join(missing)} that every run's rows carry (it has {len(contents.header)}: "
                             f"{shown}). Way out: give the results.csv of a run written by `python -m harness "
                             f"bench` (docs/results.md lists its columns), or restore it from git.")
    rows = [with_legacy_defaults(row) for row in contents.rows]
    for number, row in enumerate(rows, start=2):
        try:
            row_key(row)
            bad_shape = not all(part.isdigit() for part in row["input_shape"].split("x"))
        except (KeyError, ValueError) as error:
            bad_shape, error_text = True, str(error)
        else:
            error_text = f"input_shape {row['input_shape']!r}"
        if bad_shape:
            raise InputFileError(f"{path}: line {number} is not a configuration this harness can read ({error_text} "
                                 f"in {', '.join(f'{c}={row.get(c)!r}' for c in REQUIRED_COLUMNS)}). Way out: "
                                 f"restore the file from git, or delete that line.")
    warnings = []
    if contents.torn:
        warnings.append(f"{path}: dropped 1 line, a torn last record ({len(contents.torn)} characters without a line "
                        f"end or with missing fields: an interrupted run); `--resume` that run to measure it again")
    return contents.header, rows, warnings


def _read_details(path: Path) -> tuple[dict[tuple, dict], list[str]]:
    if not path.exists():
        return {}, []
    text = _read_bytes(path).decode("utf-8", errors="replace")
    details, dropped = {}, 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            details[BenchSpec.from_record(record["spec"]).key] = record  # the last line wins: a resumed run
        except (ValueError, KeyError, TypeError, AttributeError):
            dropped += 1
    warnings = [f"{path}: dropped {dropped} line(s) that are not a details record with a spec (garbage, or a line "
                f"torn by an interruption); those configurations have no raw samples"] if dropped else []
    return details, warnings


def _read_environment(path: Path) -> dict:
    if not path.exists():
        return {}
    data = _read_bytes(path)
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        where = f" (line {error.lineno}, column {error.colno}: {error.msg})" if isinstance(error, json.JSONDecodeError) else ""
        raise InputFileError(f"{path}: damaged, not valid JSON{where}. Way out: restore it from git (`git checkout "
                             f"-- {path}`), or leave that run out.") from None
    if not isinstance(record, dict):
        raise InputFileError(f"{path}: not a run's environment record (a JSON {type(record).__name__}, not an "
                             f"object with 'environment' and 'options'). Way out: restore it from git, or leave "
                             f"that run out.")
    return record


def read_run(folder) -> StoredRun:
    """Load a run folder (or its results.csv); see the module docstring. Raises InputFileError."""
    path = _folder_of(folder)
    header, rows, warnings = _read_results(path / RESULTS_FILE)
    record = _read_environment(path / ENVIRONMENT_FILE)
    details, details_warnings = _read_details(path / DETAILS_FILE)
    return StoredRun(path, header, rows, details, record, warnings + details_warnings)


load_run = read_run  # the name compare and others may look for
