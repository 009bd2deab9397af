"""Why a local data file does not load, in one line naming the file and the line.

``datasets`` reports a bad file with its own exceptions (``DatasetGenerationError``, a bare
``StopIteration`` for an empty file, pandas' parser errors), naming neither. ``file_problem``
reads the file the way its format is defined and says where it breaks: an empty or unreadable
file, bytes that are not UTF-8, a JSON line that does not parse (a truncated last line), a CSV row
with more or fewer fields than its header, a Parquet file whose footer is missing. It runs only
when a file is suspect (before loading, the cheap checks; after ``datasets`` failed, all of them),
so good files cost nothing.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from gopd.schema import first_line


def file_problem(file: Path, *, full: bool = True) -> str | None:
    """One line saying what is wrong with ``file``, or None. ``full=False``: existence,
    readability, emptiness and (text formats) UTF-8 only, no parsing."""
    file = Path(file)
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            f.read(1)
    except OSError as e:
        return f"{file}: unreadable ({e.strerror or e})"
    if size == 0:
        return f"{file}: empty file (no rows)"
    suffix = file.suffix.lower()
    if suffix == ".parquet":
        return _parquet_problem(file) if full else None
    if (bad := _encoding_problem(file)) is not None:  # Arrow keeps such bytes and fails only when a row is read
        return bad
    if not full:
        return None
    text = file.read_text(encoding="utf-8")
    if not text.strip():
        return f"{file}: no rows (only blank lines)"
    if suffix == ".csv":
        return _csv_problem(file, text)
    if suffix == ".json" and _whole_json(text):
        return None
    return _jsonl_problem(file, text)


def _encoding_problem(file: Path, block: int = 2**24) -> str | None:
    """The first line holding bytes that are not UTF-8 (read in blocks: data files can be large)."""
    import codecs

    decoder, lines = codecs.getincrementaldecoder("utf-8")(), 1
    with open(file, "rb") as f:
        while chunk := f.read(block):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                line = lines + chunk.count(b"\n", 0, e.start)
                return f"{file}, line {line}: not UTF-8 (byte 0x{chunk[e.start]:02x}); save the file as UTF-8"
            lines += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return f"{file}, line {lines}: not UTF-8 (the file ends inside a character)"
    return None


def _whole_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _jsonl_problem(file: Path, text: str) -> str | None:
    lines = text.splitlines()
    rows = []  # (line number, row)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            cut = " (the file ends mid-row: truncated?)" if n == len(lines) else ""
            return f"{file}, line {n}: not valid JSON{cut}: {e.msg} at column {e.colno}"
        if not isinstance(row, dict):
            return f"{file}, line {n}: a JSON {type(row).__name__}, not an object (one {{...}} row per line)"
        rows.append((n, row))
    return _mixed_types(file, rows)


def _mixed_types(file: Path, rows: list[tuple[int, dict]]) -> str | None:
    """A column whose values change type between rows (text here, a number there): Arrow cannot
    hold it; name the first row that differs (nulls are fine)."""
    seen: dict[str, tuple[str, int]] = {}
    for n, row in rows:
        for key, value in row.items():
            if value is None:
                continue
            kind = "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__
            first = seen.setdefault(key, (kind, n))
            if first[0] != kind:
                return (f"{file}, line {n}: {key!r} is a {_kind(kind)} here but a {_kind(first[0])} on line "
                        f"{first[1]}: a column holds one type")
    return None


def _kind(kind: str) -> str:
    return {"str": "string", "dict": "object", "list": "list"}.get(kind, kind)


def _csv_problem(file: Path, text: str) -> str | None:
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(rows)
        for row in rows:
            if row and len(row) != len(header):
                return (f"{file}, line {rows.line_num}: {len(row)} fields, the header has {len(header)} "
                        f"(a comma inside a value must be quoted)")
    except csv.Error as e:
        return f"{file}, line {rows.line_num}: {first_line(e)}"
    return None


def _parquet_problem(file: Path) -> str | None:
    import pyarrow.parquet as pq

    try:
        pq.ParquetFile(file).read()
    except Exception as e:  # ArrowInvalid (no footer: truncated), OSError
        return f"{file}: not a readable Parquet file ({first_line(e)})"
    return None
