"""Merge run folders (a sweep's shards, or any runs) into one run folder.

Rows are unioned by configuration (``store.row_key``); each keeps the environment columns and ``run_id``
of the run that measured it. A configuration measured twice is refused with the list of them, unless
``keep="latest"`` (the row finished last wins). Runs from different machine kinds are refused unless
``allow_mixed_machines``: their numbers are not comparable. The merged folder holds ``results.csv``,
``details.jsonl`` (the kept rows' lines), ``environment.json`` (``merged_from``: every source run with its
environment and options) and each source's pytest-benchmark JSON as ``benchmark.<run-id>[.k].json``.
Nothing is written when the merge is refused, and no partial folder is left behind: every source run is read
(``harness.store.load.read_run``: a damaged one is an InputFileError, exit 2) before anything is written, and
the merged folder is built in a temporary folder beside ``out`` and renamed into place at the end.

``expected_keys`` (the planned configurations, as ``BenchSpec.key``/``row_key`` tuples) holds the merged rows
against a plan: ``MergeResult.missing`` lists the planned keys with no row, a finding like a failed row.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.options import EXIT_FINDING, EXIT_OK, InputFileError, OptionError, require_writable_output
from harness.bench.machine import MACHINE_FACTS, PER_SHARD_FACTS, machine_of
from harness.store.load import StoredRun, read_run
from harness.store.schema import RESULT_COLUMNS, is_refusal, row_key

MERGED_FILES = ("results.csv", "details.jsonl", "environment.json")


@dataclass(frozen=True)
class MergeResult:
    folder: Path
    rows: int
    runs: int
    duplicates: int  # configurations measured more than once (kept: the latest)
    warnings: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # configurations whose measurement failed (error rows that are not refusals)
    missing: tuple[tuple, ...] = ()  # planned configurations (expected_keys) with no row in any run

    @property
    def status(self) -> int:
        """1 (a finding) when a configuration failed or a planned one has no row; else 0."""
        return EXIT_FINDING if self.failed or self.missing else EXIT_OK


def _machine(row: dict) -> tuple:
    """The row's machine (harness.bench.machine), less what a launcher sets per shard (threads, cores)."""
    return machine_of(row, ignore=PER_SHARD_FACTS)


def _describe(keys) -> str:
    shown = [f"{k[0]} {k[2]} b{k[3]} {k[4]} {k[5]} {k[6]}" for k in sorted(keys, key=str)[:5]]
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    return "; ".join(shown) + more


def describe_key(key: tuple) -> str:
    """A configuration key as a reader names it: model, shape, batch, mode, device, precision (and the rest
    where they differ from the defaults)."""
    model, overrides, shape, batch, mode, device, precision, *rest = key
    extra = [str(v) for v in rest if v not in (False, "eager", "", 0, 0.0)]
    return " ".join([model, shape, f"b{batch}", mode, device, precision] + ([overrides] if overrides else []) + extra)


def read_runs(folders: list[Path]) -> tuple[list[dict], list[str], dict[str, StoredRun]]:
    """Every complete row of every run, tagged with its run folder; warnings for dropped lines; the runs.
    A damaged run raises InputFileError before anything is written."""
    rows, warnings, runs = [], [], {}
    for folder in folders:
        run = read_run(folder)
        runs[str(folder)] = run
        warnings += run.warnings
        rows += [{**row, "__run": str(folder)} for row in run.rows]
    return rows, warnings, runs


def choose(rows: list[dict], keep: str | None) -> tuple[list[dict], set]:
    """One row per configuration, in first-seen order; refuse duplicates unless keep == 'latest'."""
    chosen: dict[tuple, dict] = {}
    duplicates = set()
    for row in rows:
        key = row_key(row)
        if key in chosen:
            duplicates.add(key)
            if row.get("finished_at", "") >= chosen[key].get("finished_at", ""):
                chosen[key] = row
        else:
            chosen[key] = row
    if duplicates and keep != "latest":
        raise OptionError(f"{len(duplicates)} configuration(s) were measured more than once among these runs "
                          f"({_describe(duplicates)}); a merge keeps each configuration exactly once and will not "
                          f"pick one silently. Way out: leave out the run that repeats them, or add --keep latest "
                          f"to keep the row that finished last.")
    return list(chosen.values()), duplicates


def check_machines(rows: list[dict], allow_mixed: bool) -> None:
    kinds = {}
    for row in rows:
        kinds.setdefault(_machine(row), Path(row["__run"]).name)
    if len(kinds) > 1 and not allow_mixed:
        facts = [f for f in MACHINE_FACTS if f not in PER_SHARD_FACTS]
        listed = "; ".join(f"{run}: " + ", ".join(f"{f}={v or '-'}" for f, v in zip(facts, kind))
                           for kind, run in kinds.items())
        raise OptionError(f"these runs were measured on {len(kinds)} kinds of machine ({listed}), so their numbers "
                          f"are not comparable in one table. Way out: merge the runs of one kind at a time, or add "
                          f"--allow-mixed-machines to merge them anyway (each row keeps its own environment).")


def _csv_text(rows: list[dict]) -> str:
    extra = [c for c in dict.fromkeys(c for row in rows for c in row) if c not in RESULT_COLUMNS and c != "__run"]
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=RESULT_COLUMNS + extra, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _environment(folders: list[Path], runs: dict[str, StoredRun]) -> dict:
    sources = [{"run_id": folder.name, **runs[str(folder)].record} for folder in folders]
    first = sources[0] if sources else {}
    return {"environment": first.get("environment", {}), "options": first.get("options", {}),
            "merged_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "merged_from": sources}


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def require_mergeable(folders: list[Path], out: Path) -> None:
    missing = [str(f) for f in folders if not (f / "results.csv").is_file()]
    if missing:
        raise InputFileError(f"no results.csv in {', '.join(missing)}: nothing to merge from there. Way out: give "
                             f"run folders (or run ids under the runs root) that hold a results.csv.")
    if out.resolve() in {f.resolve() for f in folders}:
        raise OptionError(f"--out {out} is one of the runs being merged. Way out: merge into a new folder.")
    if out.exists() and not out.is_dir():
        raise OptionError(f"--out {out} is a file, not a folder. Way out: give a new folder for the merged run.")
    env = out / "environment.json"
    if env.is_file():
        try:
            merged_before = "merged_from" in json.loads(env.read_text())
        except (OSError, ValueError, TypeError):
            merged_before = False
        if not merged_before:
            raise OptionError(f"--out {out} holds a measured run (or a damaged one), which a merge would overwrite. "
                              f"Way out: choose another --out.")
    require_writable_output("--out", out.parent, "a new folder under results/runs", folder=True)


def _unwritable(out: Path, error: OSError) -> OptionError:
    return OptionError(f"--out {out}: cannot be created or written ({getattr(error, 'strerror', None) or error}). "
                       f"Way out: choose an --out under a folder you can write to.")


def _build(folder: Path, folders: list[Path], runs: dict[str, StoredRun], kept: list[dict]) -> None:
    """Write the merged run into ``folder`` (a fresh temporary folder)."""
    lines = [runs[row["__run"]].details.get(row_key(row)) for row in kept]
    _write(folder / "details.jsonl", "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines if line))
    _write(folder / "environment.json", json.dumps(_environment(folders, runs), indent=2, sort_keys=True) + "\n")
    for source in folders:
        for raw in sorted(source.glob("benchmark*.json")):
            shutil.copyfile(raw, folder / raw.name.replace("benchmark", f"benchmark.{source.name}", 1))
    _write(folder / "results.csv", _csv_text(kept))  # last: the CSV is what makes the folder a run


def _put_in_place(built: Path, out: Path) -> None:
    """A new ``out``: the built folder renamed to it. An existing one (a sweep's folder holding its launch
    manifest, a previous merge): the built files moved in one by one, results.csv last; other files stay."""
    if not out.exists():
        os.replace(built, out)
        return
    names = sorted((p.name for p in built.iterdir()), key=lambda name: name == "results.csv")
    for name in names:
        os.replace(built / name, out / name)
    built.rmdir()


def merge(folders: list[Path], out: Path, keep: str | None = None, allow_mixed_machines: bool = False,
          expected_keys: list[tuple] | None = None) -> MergeResult:
    """Merge ``folders`` into ``out`` (see the module docstring). ``expected_keys``: the planned configurations
    (``BenchSpec.key`` tuples); those with no row come back in ``MergeResult.missing``. Raises OptionError
    (InputFileError for a damaged run) before anything is written."""
    folders, out = [Path(f) for f in folders], Path(out)
    require_mergeable(folders, out)
    rows, warnings, runs = read_runs(folders)
    kept, duplicates = choose(rows, keep)
    check_machines(kept, allow_mixed_machines)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        built = Path(tempfile.mkdtemp(prefix=f".{out.name}.merging-", dir=out.parent))
    except OSError as error:
        raise _unwritable(out, error) from None
    try:
        _build(built, folders, runs, kept)
        _put_in_place(built, out)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    failed = tuple(f"{r['model']} {r['input_shape']} b{r['batch']} {r['mode']}: {r['error']}" for r in kept
                   if r.get("error") and not is_refusal(r))
    have = {row_key(row) for row in kept}
    missing = tuple(key for key in dict.fromkeys(map(tuple, expected_keys or ())) if key not in have)
    return MergeResult(out, len(kept), len(folders), len(duplicates), tuple(warnings), failed, missing)


def add_merge_command(sub) -> None:
    """``python -m harness merge RUN... --out DIR``: the subcommand's arguments."""
    from harness.store.schema import RUNS_ROOT

    cmd = sub.add_parser("merge", help="merge run folders (e.g. a sweep's shards) into one run folder")
    cmd.add_argument("runs", nargs="+", metavar="RUN", help="run folders, or run ids under --runs-root")
    cmd.add_argument("--out", required=True, help="the merged run: a folder, or a run id under --runs-root")
    cmd.add_argument("--keep", choices=("latest",), help="accept configurations measured twice: keep the later row")
    cmd.add_argument("--allow-mixed-machines", action="store_true", help="merge runs from different kinds of machine")
    cmd.add_argument("--runs-root", type=Path, default=RUNS_ROOT, help=f"where run ids are looked up (default {RUNS_ROOT})")


def _resolve(name: str, runs_root: Path) -> Path:
    path = Path(name)
    return path if path.is_dir() or len(path.parts) > 1 else Path(runs_root) / name


def run_merge_command(args) -> int:
    from harness.options import report

    try:
        result = merge([_resolve(r, args.runs_root) for r in args.runs], _resolve(args.out, args.runs_root),
                       keep=args.keep, allow_mixed_machines=args.allow_mixed_machines,
                       expected_keys=getattr(args, "expected_keys", None))
    except OptionError as error:
        return report(error)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    repeated = f"; {result.duplicates} configuration(s) measured twice, the later row kept" if result.duplicates else ""
    print(f"merged {result.runs} run(s) into {result.folder}: {result.rows} configuration(s){repeated}")
    if result.failed:
        print(f"finding: {len(result.failed)} configuration(s) failed to measure (error rows): "
              f"{'; '.join(result.failed[:5])}{' ...' if len(result.failed) > 5 else ''}", file=sys.stderr)
    if result.missing:
        print(f"finding: {len(result.missing)} planned configuration(s) have no row in any run: "
              f"{_describe_keys(result.missing)}", file=sys.stderr)
    return result.status


def _describe_keys(keys, shown: int = 10) -> str:
    names = [describe_key(key) for key in keys]
    return "; ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
