"""Merge run folders (a sweep's shards, or any runs) into one run folder.

Rows are unioned by configuration (``store.row_key``); each keeps the environment columns and ``run_id``
of the run that measured it. A configuration measured twice is refused with the list of them, unless
``keep="latest"`` (the row finished last wins). Runs from different machine kinds are refused unless
``allow_mixed_machines``: their numbers are not comparable. The merged folder holds ``results.csv``,
``details.jsonl`` (the kept rows' lines), ``environment.json`` (``merged_from``: every source run with its
environment and options) and each source's pytest-benchmark JSON as ``benchmark.<run-id>[.k].json``.
Nothing is written when the merge is refused.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.options import OptionError
from harness.bench.machine import MACHINE_FACTS, PER_SHARD_FACTS, machine_of
from harness.bench.spec import BenchSpec
from harness.store.csvfile import read_rows
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


def _machine(row: dict) -> tuple:
    """The row's machine (harness.bench.machine), less what a launcher sets per shard (threads, cores)."""
    return machine_of(row, ignore=PER_SHARD_FACTS)


def _describe(keys) -> str:
    shown = [f"{k[0]} {k[2]} b{k[3]} {k[4]} {k[5]} {k[6]}" for k in sorted(keys, key=str)[:5]]
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    return "; ".join(shown) + more


def read_runs(folders: list[Path]) -> tuple[list[dict], list[str]]:
    """Every complete row of every run, tagged with its run folder; warnings for torn last records."""
    rows, warnings = [], []
    for folder in folders:
        contents = read_rows(folder / "results.csv")
        if contents.torn:
            warnings.append(f"{folder}: left out a torn last record (an interrupted run; resume it to measure "
                            f"that configuration again)")
        rows += [{**row, "__run": str(folder)} for row in contents.rows]
    return rows, warnings


def choose(rows: list[dict], keep: str | None) -> tuple[list[dict], set]:
    """One row per configuration, in first-seen order; refuse duplicates unless keep == 'latest'."""
    chosen: dict[tuple, dict] = {}
    duplicates = set()
    for row in rows:
        key = row_key(row)
        if key in chosen:
            duplicates.add(key)
            if row["finished_at"] >= chosen[key]["finished_at"]:
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
        listed = "; ".join(f"{run}: " + ", ".join(f"{f}={v or '-'}" for f, v in zip([f for f in MACHINE_FACTS if f not in PER_SHARD_FACTS], kind))
                           for kind, run in kinds.items())
        raise OptionError(f"these runs were measured on {len(kinds)} kinds of machine ({listed}), so their numbers "
                          f"are not comparable in one table. Way out: merge the runs of one kind at a time, or add "
                          f"--allow-mixed-machines to merge them anyway (each row keeps its own environment).")


def _details(folder: Path) -> dict[tuple, str]:
    """A run's details lines by configuration (the last line wins: a resumed run re-measured it)."""
    path = folder / "details.jsonl"
    lines = {}
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            lines[BenchSpec.from_record(json.loads(line)["spec"]).key] = line
        except (json.JSONDecodeError, KeyError):
            continue  # torn by an interruption
    return lines


def _csv_text(rows: list[dict]) -> str:
    extra = [c for c in dict.fromkeys(c for row in rows for c in row) if c not in RESULT_COLUMNS and c != "__run"]
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=RESULT_COLUMNS + extra, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _environment(folders: list[Path]) -> dict:
    sources = []
    for folder in folders:
        path = folder / "environment.json"
        sources.append({"run_id": folder.name, **(json.loads(path.read_text()) if path.exists() else {})})
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
        raise OptionError(f"no results.csv in {', '.join(missing)}: nothing to merge from there. Way out: give run "
                          f"folders (or run ids under the runs root) that hold a results.csv.")
    if out.resolve() in {f.resolve() for f in folders}:
        raise OptionError(f"--out {out} is one of the runs being merged. Way out: merge into a new folder.")
    env = out / "environment.json"
    if env.is_file() and "merged_from" not in json.loads(env.read_text()):
        raise OptionError(f"--out {out} holds a measured run, which a merge would overwrite. Way out: choose "
                          f"another --out.")


def merge(folders: list[Path], out: Path, keep: str | None = None, allow_mixed_machines: bool = False) -> MergeResult:
    folders, out = [Path(f) for f in folders], Path(out)
    require_mergeable(folders, out)
    rows, warnings = read_runs(folders)
    kept, duplicates = choose(rows, keep)
    check_machines(kept, allow_mixed_machines)
    out.mkdir(parents=True, exist_ok=True)
    details = {str(f): _details(f) for f in folders}
    lines = [details[row["__run"]].get(row_key(row)) for row in kept]
    _write(out / "details.jsonl", "".join(line + "\n" for line in lines if line))
    _write(out / "environment.json", json.dumps(_environment(folders), indent=2, sort_keys=True) + "\n")
    for folder in folders:
        for raw in sorted(folder.glob("benchmark*.json")):
            shutil.copyfile(raw, out / raw.name.replace("benchmark", f"benchmark.{folder.name}", 1))
    _write(out / "results.csv", _csv_text(kept))  # last: the CSV is what makes the folder a run
    failed = tuple(f"{r['model']} {r['input_shape']} b{r['batch']} {r['mode']}: {r['error']}" for r in kept
                   if r.get("error") and not is_refusal(r))
    return MergeResult(out, len(kept), len(folders), len(duplicates), tuple(warnings), failed)


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
                       keep=args.keep, allow_mixed_machines=args.allow_mixed_machines)
    except OptionError as error:
        return report(error)
    for warning in result.warnings:
        print(f"warning: {warning}")
    repeated = f"; {result.duplicates} configuration(s) measured twice, the later row kept" if result.duplicates else ""
    print(f"merged {result.runs} run(s) into {result.folder}: {result.rows} configuration(s){repeated}")
    return 0
