#!/usr/bin/env python3
"""Turns the samples CSV files of one backtest into one NAB detection file.

`tocsinctl backtest --samples-csv DIR` writes one file per (rule, series) with
the columns timestamp,value,score,ready,state,severity and one row per input
row. This script reads every such file of one backtest (one data file, one or
more rules) and writes timestamp,alert,score for nab_score.py:

- alert is 1 on a row where any rule's alert is firing, else 0. nab_score.py
  counts the rising edges (0 to 1) as detections by default.
- score is the highest detector score of any rule on that row, empty when no
  rule had a score (warm-up, or a rule without a detector).

The samples files must have the same rows, in the same order, with the same
timestamp text. The output has one row per row of the data file, as
nab_score.py requires. Some NAB files repeat timestamps (11 rows at a daylight
saving change) or record an hour twice. The backtest skips those rows
(--skip-bad-rows), so here a skipped row takes the state of the row before it:
without a sample the alert cannot change. Any other difference stops the
script with exit status 2.

Usage: to_detections.py --data DATA.csv OUTPUT.csv SAMPLES.csv [SAMPLES.csv ...]
Standard library only.
"""

import csv
import math
import sys


class ConversionError(Exception):
    """A samples file that cannot be merged. main() prints it without a traceback."""


def read_samples(path):
    """Read one samples file as [(timestamp, firing, score or None)]."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ConversionError(f"{path}: empty file, header row missing; pass a file written by --samples-csv")
        try:
            col_time = header.index("timestamp")
            col_score = header.index("score")
            col_state = header.index("state")
        except ValueError:
            raise ConversionError(
                f"{path}: column timestamp, score or state missing in header {header}; "
                "pass files written by tocsinctl backtest --samples-csv") from None
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            stamp = row[col_time]
            # A row with nothing after the timestamp is a sample that the rule
            # did not evaluate, so it is not firing and has no score.
            state = row[col_state] if len(row) > col_state else ""
            text = row[col_score] if len(row) > col_score else ""
            score = None
            if text:
                try:
                    score = float(text)
                except ValueError:
                    raise ConversionError(
                        f"{path}:{line_no}: invalid score {text!r}; expected a number") from None
                if math.isnan(score):
                    score = None
            rows.append((stamp, state == "firing", score))
    return rows


def merge(paths):
    """Merge the rows of all rules into [timestamp, alert, score] rows."""
    merged = None
    first = None
    for path in paths:
        rows = read_samples(path)
        if merged is None:
            merged = [[stamp, firing, score] for stamp, firing, score in rows]
            first = path
            continue
        if len(rows) != len(merged):
            raise ConversionError(
                f"{path}: {len(rows)} rows, but {first} has {len(merged)}; "
                "pass the files of one backtest run")
        for i, (stamp, firing, score) in enumerate(rows):
            entry = merged[i]
            if stamp != entry[0]:
                raise ConversionError(
                    f"{path}:{i + 2}: timestamp {stamp!r} differs from "
                    f"{entry[0]!r} in {first}; pass the files of one backtest run")
            entry[1] = entry[1] or firing
            if score is not None and (entry[2] is None or score > entry[2]):
                entry[2] = score
    return merged or []


def read_data_timestamps(path):
    """Read the timestamp text of every data row, without the header."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if rows and rows[0] and rows[0][0].strip().lower() == "timestamp":
        rows = rows[1:]
    return [row[0] for row in rows]


def align(data_path, merged):
    """Return one (timestamp, alert, score) per data row.

    A data row whose timestamp text equals the next evaluated row takes that
    row's state. Any other data row was skipped by the backtest, so it repeats
    the previous state.
    """
    stamps = read_data_timestamps(data_path)
    aligned = []
    j = 0
    firing, score = False, None
    for stamp in stamps:
        if j < len(merged) and merged[j][0] == stamp:
            _, firing, score = merged[j]
            j += 1
        aligned.append((stamp, firing, score))
    if j != len(merged):
        raise ConversionError(
            f"{data_path}: evaluated row {j + 2} ({merged[j][0]!r}) not found in the data "
            "file; pass the data file that the backtest read")
    return aligned


def write_detections(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["timestamp", "alert", "score"])
        for stamp, firing, score in rows:
            writer.writerow([stamp, 1 if firing else 0, "" if score is None else repr(score)])


USAGE = "usage: to_detections.py --data DATA.csv OUTPUT.csv SAMPLES.csv [SAMPLES.csv ...]\n"


def main(argv):
    if len(argv) < 5 or argv[1] != "--data":
        sys.stderr.write(USAGE)
        return 2
    try:
        write_detections(argv[3], align(argv[2], merge(argv[4:])))
    except (ConversionError, OSError) as error:
        sys.stderr.write(f"to_detections.py: {error}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
