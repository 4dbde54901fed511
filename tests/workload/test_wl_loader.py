"""The 2024 CSV loader: mixed timestamp formats, counted bad rows, Monday re-basing, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from wl_helpers import rng_week_rows, write_csv

from warmserve.errors import InputError
from warmserve.workload.loader import DAY_S, WEEK_S, load_azure_csv


def test_mixed_formats_keep_every_row(tmp_path):
    rows = [
        ("2024-05-12 00:00:00.001163+00:00", 10, 5),
        ("2024-05-12 00:00:01+00:00", 11, 6),
        ("2024-05-12 00:00:01.500000+00:00", 12, 7),
        ("2024-05-13 00:00:02+00:00", 13, 8),
    ]
    tr = load_azure_csv(write_csv(tmp_path / "a.csv", rows))
    assert tr.info["rows_kept"] == 4 and tr.info["rows_unparseable_timestamp"] == 0
    # Sunday start: shift one day; Monday 00:00:02 is t = 1 day + 2 s - 1 ms - 1 day
    t = tr.frame["t_s"].to_numpy()
    assert tr.info["weekday_shift_days"] == 1
    assert t[0] == pytest.approx(2.0 - 0.001163, abs=1e-9)
    # the three Sunday rows wrapped to the end of the week, order kept
    assert np.allclose(t[1:], WEEK_S - DAY_S + np.array([0.0, 1.0 - 0.001163, 1.5 - 0.001163]))
    assert tr.frame["input_tokens"].tolist() == [13, 10, 11, 12]


def test_naive_timestamps_with_seven_fraction_digits(tmp_path):
    rows = [("2023-11-16 18:17:03.9799600", 1, 1), ("2023-11-16 18:17:04", 2, 2), ("2023-11-16 18:17:04.0319601", 3, 3)]
    tr = load_azure_csv(write_csv(tmp_path / "a.csv", rows))
    assert tr.info["first_weekday"] == "Thursday" and tr.info["weekday_shift_days"] == 4
    d = np.diff(tr.frame["t_s"].to_numpy())
    assert d == pytest.approx([0.02004, 0.0319601], abs=1e-9)  # t ~ 3.5e5 s: ulp ~ 6e-11


@pytest.mark.parametrize(("start", "weekday", "shift"),
                         [("2024-05-12", "Sunday", 1), ("2024-05-10", "Friday", 3), ("2024-05-13", "Monday", 0)])
def test_shift_from_first_weekday_not_file_name(tmp_path, start, weekday, shift):
    rows = rng_week_rows(f"{start} 00:00:00", days=7, per_day=5)
    tr = load_azure_csv(write_csv(tmp_path / "code_named_file.csv", rows))
    assert tr.info["first_weekday"] == weekday and tr.info["weekday_shift_days"] == shift
    t = tr.frame["t_s"].to_numpy()
    assert (np.diff(t) >= 0).all() and t.min() >= 0 and t.max() < WEEK_S
    assert tr.days_present == 7 and tr.info["rows_kept"] == 35


def test_unparseable_rows_counted_and_limited(tmp_path):
    rows = [("2024-05-12 00:00:00.5+00:00", 1, 1), ("not a time", 2, 2), ("2024-05-12 00:00:02+00:00", 3, 3),
            ("2024-13-40 99:00:00", 4, 4)]
    path = write_csv(tmp_path / "a.csv", rows)
    with pytest.raises(InputError, match="column .TIMESTAMP. row 2: cannot be parsed; 2 of 4"):
        load_azure_csv(path)
    tr = load_azure_csv(path, max_unparseable=2)
    assert tr.info["rows_unparseable_timestamp"] == 2 and tr.info["rows_kept"] == 2
    assert tr.frame["input_tokens"].tolist() == [1, 3]


@pytest.mark.parametrize(
    ("header", "rows", "match"),
    [
        ("TIMESTAMP,ContextTokens", [("2024-05-12 00:00:00+00:00", 1, "")],
         r"missing column\(s\) \['GeneratedTokens'\]"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens", [("2024-05-12 00:00:00+00:00", 1, "")],
         "'GeneratedTokens' has 1 empty/NaN"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens", [("2024-05-12 00:00:00+00:00", -5, 3)],
         "'ContextTokens' row 1: negative"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens", [("2024-05-12 00:00:00+00:00", "abc", 3)],
         "'ContextTokens' is not numeric"),
    ],
)
def test_bad_columns(tmp_path, header, rows, match):
    p = tmp_path / "a.csv"
    body = "".join(",".join(str(x) for x in r[: len(header.split(","))]) + "\n" for r in rows)
    p.write_text(header + "\n" + body)
    with pytest.raises(InputError, match=match):
        load_azure_csv(p)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_azure_csv(tmp_path / "nope.csv")


def test_day_origin_midnight_shifts_by_first_row_offset(tmp_path):
    rows = rng_week_rows("2024-05-12 00:00:00", days=7, per_day=3)
    p = write_csv(tmp_path / "a.csv", rows)
    a = load_azure_csv(p).frame["t_s"].to_numpy()
    b = load_azure_csv(p, day_origin="midnight").frame["t_s"].to_numpy()
    first = pd.Timestamp(rows[0][0])
    expected = (first - first.normalize()).total_seconds()
    assert expected > 0
    assert np.allclose((b - a)[5:15], expected)  # mid-week rows: same order under both origins
