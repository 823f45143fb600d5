"""A sweep's plan and its record on disk.

A sweep ``S`` of ``N`` shards lives under the runs root as ``S-shard-i-of-N/`` (one ordinary run folder
per shard, written by its own process, so no two shards ever write the same file) and ``S/``: the
manifest ``launch.json`` (the shard command, the launcher's settings, each shard's last exit status),
``logs/shard-i.log``, and, once every shard has finished, the merged run.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.options import EXIT_FINDING, EXIT_NOTHING, EXIT_OK, EXIT_UNEXPECTED, OptionError

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = "launch.json"
# The launcher's plan: a pytest session run with this variable set (to a file) and --collect-only writes there
# every configuration it would measure, [spec key, row key] each, and opens no run (harness.pytest_plugin).
PLANNED_KEYS_ENV = "HARNESS_PLANNED_KEYS"
# Exit statuses of a shard (``python -m harness bench``, the one exit contract, harness.options) that ran to its
# end: 0; 1 a configuration failed or did not settle (its row is recorded); 3 nothing measured (every
# configuration refused, or none dealt to this shard; pytest's own 5, which the CLI reports as 3, is taken too).
FINISHED = (EXIT_OK, EXIT_FINDING, EXIT_NOTHING, 5)


def pytest_command(pytest_args: list[str]) -> list[str]:
    """A shard's command without the interpreter: the benchmark sweep of ``python -m harness bench`` (the
    packaged pytest plugin), so rows are real benchmark rows."""
    return ["-m", "harness", "bench", "-q", *pytest_args]


@dataclass
class SweepPlan:
    sweep_id: str
    runs_root: Path
    shards: int
    command: list[str]  # arguments after the interpreter; the launcher adds --shard, --runs-root, --run-id/--resume
    launcher: dict = field(default_factory=dict)  # launcher settings, recorded so --resume can reuse them
    status: dict = field(default_factory=dict)  # str(shard index) -> {"returncode": int, "attempts": int}
    # The planned configurations, [spec key, row key] each (the shard is dealt by the spec key; the row carries
    # the row key: they differ for a --sw-batch auto search); None for sweeps planned before it was recorded.
    planned: list | None = None

    def planned_keys(self) -> list[tuple] | None:
        """The row key of every planned configuration (what the merge holds the rows against)."""
        return None if self.planned is None else [tuple(row) for _, row in self.planned]

    def shard_of_planned(self) -> dict[tuple, int]:
        """Row key -> the shard that measures it (``shards.assign`` on the spec keys, as each shard selects)."""
        from harness.launch.shards import assign

        shard_of = assign((tuple(spec) for spec, _ in self.planned or ()), self.shards)
        return {tuple(row): shard_of[tuple(spec)] for spec, row in self.planned or ()}

    @property
    def folder(self) -> Path:
        return Path(self.runs_root) / self.sweep_id

    def shard_run_id(self, index: int) -> str:
        return f"{self.sweep_id}-shard-{index}-of-{self.shards}"

    def shard_folder(self, index: int) -> Path:
        return Path(self.runs_root) / self.shard_run_id(index)

    def log_path(self, index: int) -> Path:
        return self.folder / "logs" / f"shard-{index}.log"

    def finished(self, index: int) -> bool:
        """Ran to its end, and no planned configuration of it is without a row (``mark_missing``)."""
        status = self.status.get(str(index), {})
        return status.get("returncode") in FINISHED and not status.get("missing")

    def mark_missing(self, missing: list[tuple]) -> list[int]:
        """Planned configurations with no row after the merge: their shards count as unfinished, so that
        ``--resume`` runs them again (each resumes its own run and measures what it lacks). The shards marked."""
        shard_of = self.shard_of_planned()
        marked: dict[int, int] = {}
        for key in missing:
            index = shard_of.get(tuple(key))
            if index is not None:
                marked[index] = marked.get(index, 0) + 1
        for index, count in marked.items():
            self.status.setdefault(str(index), {})["missing"] = count
        if marked:
            self.save()
        return sorted(marked)

    def pending(self) -> list[int]:
        """Shards without a finished attempt: the only work a resume submits."""
        return [i for i in range(self.shards) if not self.finished(i)]

    def shard_argv(self, index: int) -> list[str]:
        """The full command of one shard: a new run, or the resumption of its folder when one was started."""
        started = (self.shard_folder(index) / "environment.json").is_file() or \
            (self.shard_folder(index) / "results.csv").is_file()
        run = ["--resume", self.shard_run_id(index)] if started else ["--run-id", self.shard_run_id(index)]
        return [sys.executable, *self.command, "--shard", f"{index}/{self.shards}",
                "--runs-root", str(self.runs_root), *run]

    def record(self, index: int, returncode: int) -> None:
        previous = self.status.get(str(index), {})  # a new attempt: what it still lacks is known after the merge
        self.status[str(index)] = {"returncode": returncode, "attempts": previous.get("attempts", 0) + 1}
        self.save()

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {k: v for k, v in asdict(self).items() if k != "runs_root"}
        temporary = self.folder / (MANIFEST + ".tmp")
        temporary.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        os.replace(temporary, self.folder / MANIFEST)

    @classmethod
    def load(cls, runs_root: Path, sweep_id: str) -> "SweepPlan":
        path = Path(runs_root) / sweep_id / MANIFEST
        if not path.is_file():
            known = sorted(p.parent.name for p in Path(runs_root).glob(f"*/{MANIFEST}"))
            raise OptionError(f"--resume {sweep_id!r}: there is no sweep of that name under {runs_root} (sweeps "
                              f"there: {', '.join(known[-8:]) or 'none'}). Way out: give one of those names, or "
                              f"leave out --resume to start a new sweep.")
        record = json.loads(path.read_text())
        return cls(runs_root=Path(runs_root), **record)


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "never started or its status was lost"
    if returncode < 0:
        return f"killed by signal {-returncode}"
    nothing = "finished, nothing measured (every configuration refused, or none in this shard)"
    return {EXIT_OK: "finished", EXIT_FINDING: "finished, some configurations failed or did not settle",
            2: "refused its options", EXIT_NOTHING: nothing, 5: nothing,
            EXIT_UNEXPECTED: "stopped by an unexpected error (see its log)"}.get(returncode, f"exit status {returncode}")
