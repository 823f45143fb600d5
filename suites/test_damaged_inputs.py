"""Damaged, truncated, mis-columned and missing run files, and outputs that cannot be written: every command
that reads runs (report, merge, regress) refuses them with exit 2 and one paragraph (no traceback, nothing
written), uses partly usable data with a warning that counts the dropped lines and names the file, and says
"nothing to report" (exit 3) for a run that holds only a header. Fast: no torch for report and merge."""
from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from harness.options import EXIT_FINDING, EXIT_NOTHING, EXIT_OK, EXIT_USAGE, InputFileError
from harness.store.load import read_run
from harness.store.schema import LEGACY_DEFAULTS, row_key

REPO = Path(__file__).resolve().parents[1]
SMALL_RUN = REPO / "results" / "runs" / "20261126T051742Z-cpu-compare"  # 10 rows: the smallest committed run


@pytest.fixture
def run(tmp_path) -> Path:
    folder = tmp_path / "runs" / SMALL_RUN.name
    shutil.copytree(SMALL_RUN, folder)
    return folder


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


# --- the damage ----------------------------------------------------------------------------------

def torn_last_line(run: Path) -> None:
    text = (run / "results.csv").read_text()
    (run / "results.csv").write_text(text[:-40])  # the last record loses its end: an interrupted write


def truncated_mid_file(run: Path) -> None:
    data = (run / "results.csv").read_bytes()
    (run / "results.csv").write_bytes(data[:len(data) // 2])


def truncated_in_header(run: Path) -> None:
    (run / "results.csv").write_bytes((run / "results.csv").read_bytes()[:30])


def mis_columned(run: Path) -> None:
    lines = _lines(run / "results.csv")
    (run / "results.csv").write_text(lines[0].replace("model,", "network,", 1).replace(",batch,", ",bs,", 1)
                                     + "".join(lines[1:]))


def not_csv(run: Path) -> None:
    (run / "results.csv").write_bytes(bytes(range(256)) * 4)


def json_as_csv(run: Path) -> None:
    shutil.copyfile(run / "environment.json", run / "results.csv")


def damaged_in_the_middle(run: Path) -> None:
    lines = _lines(run / "results.csv")
    lines[3] = lines[3][:50] + "\r\n"
    (run / "results.csv").write_text("".join(lines))


def corrupt_environment(run: Path) -> None:
    (run / "environment.json").write_text('{"environment": {"cpu": "x",')


def garbage_details(run: Path) -> None:
    lines = _lines(run / "details.jsonl")
    (run / "details.jsonl").write_text("not json\n" + "".join(lines[:4]) + "{\"spec\": 3}\n" + "".join(lines[4:])
                                       + '{"spec": {"model": "unet3d", "inp')


def missing_results(run: Path) -> None:
    (run / "results.csv").unlink()


def missing_side_files(run: Path) -> None:
    (run / "details.jsonl").unlink()
    (run / "environment.json").unlink()


def only_a_header(run: Path) -> None:
    (run / "results.csv").write_text(_lines(run / "results.csv")[0])


def unreadable_results(run: Path) -> None:
    (run / "results.csv").unlink()
    (run / "results.csv").mkdir()  # even root cannot read a folder as a file


REFUSED = [truncated_in_header, mis_columned, not_csv, json_as_csv, damaged_in_the_middle, corrupt_environment,
           missing_results, unreadable_results]
PARTLY_USABLE = [torn_last_line, truncated_mid_file, garbage_details]


def _refusal(capsys, status: int, expected: int = EXIT_USAGE) -> str:
    out, err = capsys.readouterr()
    assert status == expected, out + err
    assert "Traceback" not in out + err
    paragraph = err.strip()
    assert paragraph.startswith("error: ") and "\n" not in paragraph and "Way out" in paragraph, err
    return paragraph


# --- the loader ----------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", REFUSED, ids=lambda f: f.__name__)
def test_the_loader_refuses_a_damaged_run_naming_the_file(run, damage):
    damage(run)
    with pytest.raises(InputFileError) as refused:
        read_run(run)
    text = refused.value.args[0]
    assert str(run) in text and "Way out" in text and "\n" not in text


@pytest.mark.parametrize("damage, file, dropped", [(torn_last_line, "results.csv", 1),
                                                   (truncated_mid_file, "results.csv", 1),
                                                   (garbage_details, "details.jsonl", 3)],
                         ids=["torn", "truncated", "garbage-details"])
def test_partly_usable_data_is_used_with_a_warning_that_counts_what_was_dropped(run, damage, file, dropped):
    whole = read_run(run)
    damage(run)
    loaded = read_run(run)
    assert len(loaded.warnings) == 1
    assert str(run / file) in loaded.warnings[0] and f"dropped {dropped} line" in loaded.warnings[0]
    if file == "results.csv":
        assert 0 < len(loaded.rows) < len(whole.rows) and loaded.rows == whole.rows[:len(loaded.rows)]
    else:
        assert loaded.rows == whole.rows and loaded.details == whole.details


def test_a_whole_run_loads_every_row_with_its_details_and_environment(run):
    loaded = read_run(run)
    assert loaded.warnings == [] and len(loaded.rows) == 10
    assert all(key in loaded.details for key, _ in loaded.keyed())
    assert loaded.environment["cpu_count"] and loaded.record["options"]
    first = next(iter(loaded.details))
    assert len(loaded.samples(first)["latency_s"]) >= 2


def test_a_run_without_details_or_environment_still_loads(run):
    missing_side_files(run)
    loaded = read_run(run)
    assert len(loaded.rows) == 10 and loaded.details == {} and loaded.environment == {} and not loaded.warnings
    assert loaded.row_environment["cpu_count"]


def test_rows_of_runs_older_than_a_column_take_the_legacy_defaults(tmp_path):
    from harness.bench.spec import BenchSpec

    old = tmp_path / "old"
    old.mkdir()
    (old / "results.csv").write_text("model,input_shape,batch,mode,compile,error\r\n"
                                     "unet3d,1x16x16x16,2,train,True,\r\n")
    (row,) = read_run(old).rows
    for column, value in LEGACY_DEFAULTS.items():
        assert row[column] == value
    assert row["cudnn_benchmark"] == "False" and row["exec_mode"] == "compile"
    assert row_key(row) == BenchSpec("unet3d", (1, 16, 16, 16), 2, "train", exec_mode="compile").key
    # a key column missing from the row altogether (not even in LEGACY_DEFAULTS' fill): the spec's default
    bare = {"model": "unet3d", "input_shape": "1x16x16x16", "batch": "2", "mode": "train"}
    assert row_key(bare) == BenchSpec("unet3d", (1, 16, 16, 16), 2, "train").key


# --- report --------------------------------------------------------------------------------------

def _report(argv) -> int:
    from harness.report.__main__ import main

    return main([str(a) for a in argv])


@pytest.mark.parametrize("damage", REFUSED, ids=lambda f: f.__name__)
def test_report_refuses_a_damaged_run_and_writes_nothing(run, damage, tmp_path, capsys):
    damage(run)
    out = tmp_path / "report"
    paragraph = _refusal(capsys, _report([run, "--out", out]))
    assert str(run) in paragraph
    assert not out.exists()


def test_report_on_a_run_holding_only_a_header_is_nothing_to_report(run, tmp_path, capsys):
    only_a_header(run)
    out = tmp_path / "report"
    status = _report([run, "--out", out])
    err = capsys.readouterr().err
    assert status == EXIT_NOTHING and "nothing to report" in err and str(run / "results.csv") in err
    assert "results/runs/" not in err.split("(")[0] and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("out", ["/proc/nope", "FILE"])
def test_report_refuses_an_out_it_cannot_write(run, tmp_path, capsys, out):
    if out == "FILE":
        out = tmp_path / "a-file"
        out.write_text("mine")
    _refusal(capsys, _report([run, "--out", out]))
    assert not Path("/proc/nope").exists()
    if isinstance(out, Path):
        assert out.read_text() == "mine"


def test_report_refuses_a_path_that_holds_no_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _refusal(capsys, _report([tmp_path / "empty", "--out", tmp_path / "report"]))
    _refusal(capsys, _report([tmp_path / "nowhere", "--out", tmp_path / "report"]))
    assert not (tmp_path / "report").exists()


# --- merge ---------------------------------------------------------------------------------------

def _merge(argv) -> int:
    import argparse

    from harness.store.merge import add_merge_command, run_merge_command

    parser = argparse.ArgumentParser()
    add_merge_command(parser.add_subparsers(dest="command"))
    return run_merge_command(parser.parse_args(["merge", *map(str, argv)]))


@pytest.mark.parametrize("damage", REFUSED, ids=lambda f: f.__name__)
def test_merge_refuses_a_damaged_run_and_leaves_no_partial_folder(run, damage, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(SMALL_RUN, other)
    damage(run)
    before = sorted(p.name for p in tmp_path.iterdir())
    paragraph = _refusal(capsys, _merge([other, run, "--out", tmp_path / "merged"]))
    assert str(run) in paragraph
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output folder, no temporary one


def test_merge_refuses_an_out_it_cannot_write(run, capsys):
    _refusal(capsys, _merge([run, "--out", "/proc/nope/merged"]))


@pytest.mark.parametrize("damage", PARTLY_USABLE, ids=lambda f: f.__name__)
def test_merge_uses_partly_usable_runs_and_says_what_it_dropped(run, damage, tmp_path, capsys):
    damage(run)
    status = _merge([run, "--out", tmp_path / "merged"])
    out, err = capsys.readouterr()
    assert status == EXIT_OK, out + err
    assert "warning: " in err and "dropped" in err and str(run) in err and "Traceback" not in err
    assert len(read_run(tmp_path / "merged").rows) == len(read_run(run).rows)


def test_merge_holds_the_rows_against_the_planned_configurations(run, tmp_path, capsys):
    from harness.bench.spec import BenchSpec
    from harness.store.merge import merge

    keys = [key for key, _ in read_run(run).keyed()]
    lost = BenchSpec("unet3d", (1, 16, 16, 16), 2, "train").key
    result = merge([run], tmp_path / "merged", expected_keys=[*keys, lost])
    assert result.missing == (lost,) and result.status == EXIT_FINDING
    assert merge([run], tmp_path / "merged", expected_keys=keys).missing == ()
    shutil.rmtree(tmp_path / "merged")
    with_plan = merge([run], tmp_path / "merged", expected_keys=None)
    assert with_plan.missing == () and with_plan.status == EXIT_OK


def test_merge_command_exits_1_naming_a_failed_configuration(run, tmp_path, capsys):
    rows = list(csv.DictReader(io.StringIO((run / "results.csv").read_text(), newline="")))
    rows[0]["error"] = "RuntimeError: boom"
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    (run / "results.csv").write_text(buffer.getvalue(), newline="")
    status = _merge([run, "--out", tmp_path / "merged"])
    err = capsys.readouterr().err
    assert status == EXIT_FINDING and "boom" in err and rows[0]["model"] in err


def test_a_merge_into_a_sweep_folder_keeps_its_other_files(run, tmp_path):
    from harness.store.merge import merge

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "launch.json").write_text("{}")
    merge([run], sweep)
    assert (sweep / "launch.json").read_text() == "{}" and len(read_run(sweep).rows) == 10
    merge([run], sweep)  # again: the previous merge is replaced, the manifest stays
    assert (sweep / "launch.json").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- regress (reads a committed run as its baseline) -----------------------------------------------

def _regress(argv) -> int:
    from harness.evidence.regress.cli import main

    return main([str(a) for a in argv])


@pytest.mark.parametrize("damage", [mis_columned, corrupt_environment, not_csv, damaged_in_the_middle],
                         ids=lambda f: f.__name__)
def test_regress_refuses_a_damaged_baseline_before_measuring(run, damage, tmp_path, capsys):
    damage(run)
    out = tmp_path / "latest.json"
    paragraph = _refusal(capsys, _regress(["--baseline", run, "--models", "unet2d", "--out", out]))
    assert str(run) in paragraph and not out.exists()


def test_regress_refuses_a_ref_that_is_not_a_commit(tmp_path, capsys):
    out = tmp_path / "latest.json"
    paragraph = _refusal(capsys, _regress(["--against", "nosuchref", "--models", "unet2d", "--out", out]))
    assert "nosuchref" in paragraph and not out.exists()


def test_regress_refuses_an_out_it_cannot_write(run, capsys):
    _refusal(capsys, _regress(["--baseline", run, "--models", "unet2d", "--out", "/proc/nope/latest.json"]))


def test_regress_refuses_a_damaged_run_among_those_it_chooses_from(run, tmp_path, capsys):
    corrupt_environment(run)
    out = tmp_path / "latest.json"
    paragraph = _refusal(capsys, _regress(["--runs-root", run.parent, "--models", "unet2d", "--modes", "inference",
                                           "--out", out]))
    assert str(run / "environment.json") in paragraph and not out.exists()
