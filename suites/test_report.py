"""Reports from real (tiny) measurements: tables, plots, merging shards, byte-for-byte determinism."""
import hashlib
import shutil
from datetime import datetime, timedelta

import pytest

from harness.bench.environment import capture
from harness.bench.run import measure
from harness.report.__main__ import build
from harness.report.load import load_results
from harness.report.tables import comparison
from harness.bench.spec import BenchSpec
from harness.store.run_store import RunStore


def _sweep(run_dir, models):
    """Real measurements, tiny: the UNets at 8 base channels (the article's 64 made this fixture 3 times slower
    and change nothing a report does with the rows)."""
    store, env = RunStore(run_dir), capture()
    for model, shape in models:
        for mode in ("inference", "train"):
            spec = BenchSpec(model, shape, 2, mode, warmup=1, rounds=2, blocks=1, overrides="base_c=8")
            store.append(measure(spec), env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    # Two shards of one sweep, as if run on two machines: merged by the loader.
    _sweep(root / "shard-a", [("unet3d", (1, 16, 16, 16))])
    _sweep(root / "shard-b", [("unet2d", (1, 32, 32)), ("unet3d-trilinear", (1, 16, 16, 16))])
    return root


def test_shards_merge_into_one_table_with_ratios_against_unet3d(runs):
    results = load_results([runs])
    assert set(results["model"]) == {"unet3d", "unet2d", "unet3d-trilinear"}
    table = comparison(results).set_index("model")
    assert table.loc["unet3d", "x_inference"] == 1.0
    assert table.loc["unet3d-trilinear", "x_gmacs"] == pytest.approx(
        table.loc["unet3d-trilinear", "gmacs"] / table.loc["unet3d", "gmacs"])
    assert table.loc["unet2d", "x_inference"] != table.loc["unet2d", "x_inference"]  # NaN: 2D has no 3D baseline


def _measured_again(run, folder, later):
    """``run`` as a run named after ``folder`` that finished ``later`` would hold it: the same measurements
    (a second measurement would only cost a minute more), its own run_id and finish times."""
    import csv
    import io

    shutil.copytree(run, folder)
    text = (folder / "results.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for row in rows:
        finished = datetime.fromisoformat(row["finished_at"]) + later
        row.update(run_id=folder.name, finished_at=finished.isoformat(timespec="seconds"))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    (folder / "results.csv").write_text(buffer.getvalue(), newline="")
    return folder


def test_the_latest_row_wins_when_a_configuration_was_measured_twice(runs, tmp_path):
    # The later run given first: the finish time decides, not the order of the paths.
    again = _measured_again(runs / "shard-a", tmp_path / "again", timedelta(minutes=1))
    results = load_results([again, runs])
    unet3d = results[results["model"] == "unet3d"]
    assert len(unet3d) == 2 and set(unet3d["run_id"]) == {"again"}
    earlier = _measured_again(runs / "shard-a", tmp_path / "earlier", timedelta(minutes=-1))
    results = load_results([runs, earlier])
    assert set(results[results["model"] == "unet3d"]["run_id"]) == {"shard-a"}


def test_report_files_are_written_and_rebuild_byte_for_byte(runs, tmp_path, monkeypatch):

    first = build([runs], tmp_path / "one")
    second = build([runs], tmp_path / "two")
    names = sorted(p.name for p in first)
    assert {"comparison.md", "comparison.tex", "comparison.csv"} <= set(names)
    assert any(n.endswith(".png") for n in names) and any(n.endswith(".pdf") for n in names)
    digest = lambda paths: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}  # noqa: E731
    assert digest(first) == digest(second)
    markdown = (tmp_path / "one" / "comparison.md").read_text()
    assert "unet3d-trilinear" in markdown and "unet2d" in markdown
    assert "\\toprule" in (tmp_path / "one" / "comparison.tex").read_text()


# --- from a committed run: stale files, each run's own commit ------------------------------------------

from pathlib import Path  # noqa: E402

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "runs" / "20261126T051742Z-cpu-compare"


def test_a_rebuild_deletes_the_files_it_no_longer_makes_and_never_the_users(tmp_path):
    from harness.report.__main__ import MANIFEST

    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "comparison-cpu-a-title-no-longer-made.png").write_bytes(b"stale")  # before manifests: by its name
    written = build([COMMITTED], out)
    assert not (out / "comparison-cpu-a-title-no-longer-made.png").exists() and (out / "notes.txt").exists()
    assert sorted((out / MANIFEST).read_text().split()) == sorted(p.name for p in written)
    (out / "gone.pdf").write_bytes(b"made by an earlier build")
    (out / MANIFEST).write_text((out / MANIFEST).read_text() + "gone.pdf\n")
    (out / "comparison-mine.png").write_bytes(b"the user's, made after the manifest")
    again = build([COMMITTED], out)
    assert {p.name for p in again} == {p.name for p in written}
    assert not (out / "gone.pdf").exists()
    assert (out / "comparison-mine.png").exists() and (out / "notes.txt").read_text() == "mine"


def test_the_footnote_names_each_runs_own_commit(tmp_path):
    import csv
    import io

    from harness.report.tables import groups

    runs = []
    for index, name in enumerate(("one", "two")):
        folder = tmp_path / name
        shutil.copytree(COMMITTED, folder)
        rows = list(csv.DictReader(io.StringIO((folder / "results.csv").read_text(), newline="")))
        rows = [{**row, "run_id": name, "git_commit": f"{index}" * 40, "finished_at": f"2027-01-0{index + 1}"}
                for row in rows if (row["model"] in ("unet3d", "unetpp3d")) == (index == 0)]
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        (folder / "results.csv").write_text(buffer.getvalue(), newline="")
        runs.append(folder)
    footnotes = [footnote for _, footnote, _ in groups(comparison(load_results(runs)))]
    assert len(footnotes) == 1
    assert f"one (commit {'0' * 10})" in footnotes[0] and f"two (commit {'1' * 10})" in footnotes[0]
