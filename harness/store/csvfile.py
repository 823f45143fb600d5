"""Read ``results.csv`` as the writer left it, including after a crash or power loss mid-write.

The writer appends one row at a time and fsyncs it, so the only damage an interrupted run can leave is
a torn last record: a line without its terminating newline, or with fewer fields than the header. Such
a record is never a measurement; ``read_rows`` reports it instead of returning it, and
``drop_torn_tail`` cuts it off so that a resumed run appends after the last complete row.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CsvContents:
    header: list[str]
    rows: list[dict]
    torn: str  # the text of a torn last record, empty when the file is whole
    complete_bytes: int  # length of the file up to the end of its last complete record


def read_rows(path: Path) -> CsvContents:
    data = Path(path).read_bytes()
    text = data.decode("utf-8", errors="replace")
    # Records end with "\r\n" (the csv writer's terminator); anything after the last one is torn.
    end = text.rfind("\n") + 1
    whole, tail = text[:end], text[end:]
    records = list(csv.reader(io.StringIO(whole, newline="")))
    if not records:
        return CsvContents([], [], tail, 0)
    header, body = records[0], records[1:]
    if body and len(body[-1]) != len(header):  # a record cut off right after an embedded newline
        last_start = whole.rstrip("\r\n").rfind("\n") + 1
        tail, whole, body = whole[last_start:] + tail, whole[:last_start], body[:-1]
    bad = [i for i, record in enumerate(body) if len(record) != len(header)]
    if bad:
        raise ValueError(f"{path}: record {bad[0] + 2} has {len(body[bad[0]])} fields, the header "
                         f"{len(header)}; only the last record can be torn by an interrupted run, so "
                         f"this file was edited or corrupted")
    rows = [dict(zip(header, record)) for record in body]
    return CsvContents(header, rows, tail, len(whole.encode("utf-8")))


def drop_torn_tail(path: Path) -> str:
    """Truncate a torn last record; return its text (empty when the file was whole)."""
    contents = read_rows(path)
    if contents.torn:
        with Path(path).open("r+b") as handle:
            handle.truncate(contents.complete_bytes)
    return contents.torn
