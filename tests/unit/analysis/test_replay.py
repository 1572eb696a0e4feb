"""Bring-your-own-logs: column mapping, formats, and bad rows reported by number."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from services.analysis import ColumnMapping, ReplayError, read_logs

MAPPING = ColumnMapping.parse(
    "action=ad,reward=click,propensity=p,context=country+device,timestamp=ts"
)


def _write_csv(path: Path, n: int, bad: dict[int, str]) -> None:
    """n data rows; `bad` maps a 1-based row number to the raw line that replaces it."""
    rng = np.random.default_rng(0)
    country = np.array(["DE", "FR", "US"])[rng.integers(0, 3, n)]
    device = np.array(["mobile", "desktop"])[rng.integers(0, 2, n)]
    ad = np.char.add("c", rng.integers(0, 5, n).astype(str))
    p = np.char.mod("%.4f", rng.uniform(0.05, 1.0, n))
    click = (rng.random(n) < 0.1).astype(int).astype(str)
    ts = (1_764_237_600_000 + np.arange(n)).astype(str)
    lines = [",".join(r) for r in zip(ts, country, device, ad, p, click, strict=True)]
    for row, text in bad.items():
        lines[row - 1] = text
    path.write_text("ts,country,device,ad,p,click\n" + "\n".join(lines) + "\n")


@pytest.mark.slow
def test_100k_row_csv_reads_in_seconds_and_reports_bad_rows_by_number(tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    bad = {
        42: "1764237600041,DE,mobile,c1,1.5,0",  # propensity > 1
        1000: "1764237600999,DE,mobile,c1,0.5,maybe",  # reward not a number
        5001: "1764237605000,DE",  # too few fields
        77777: "1764237677776,FR,desktop,c2,0,1",  # propensity 0
        99999: "yesterday,FR,desktop,c2,0.5,1",  # timestamp
    }
    _write_csv(path, 100_000, bad)
    start = time.perf_counter()
    with pytest.raises(ReplayError) as err:
        read_logs(path, MAPPING)
    msg = str(err.value)
    assert "5 of 100000 rows are bad" in msg
    for row in bad:
        assert f"row {row} (line {row + 1})" in msg
    assert "propensity must be in (0, 1]" in msg and "has 2 fields, the header has 6" in msg

    failing_read = time.perf_counter() - start
    start = time.perf_counter()
    result = read_logs(path, MAPPING, on_bad="skip")
    elapsed = max(failing_read, time.perf_counter() - start)
    assert result.bad_row_numbers == sorted(bad)
    assert result.data.n == 100_000 - len(bad) and result.total_rows == 100_000
    assert len(result.data.contexts) == 6 and result.data.actions == ("c0", "c1", "c2", "c3", "c4")
    assert result.data.contexts[0] == "country=DE|device=desktop"  # the segment key format
    assert elapsed < 10, f"reading 100k rows took {elapsed:.1f}s"  # ~1 s on an idle machine


def test_missing_column_names_what_the_file_has(tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    path.write_text("ad,click\nc1,1\n")
    with pytest.raises(ReplayError, match=r"\['p'\] not in the file; it has \['ad', 'click'\]"):
        read_logs(path, ColumnMapping.parse("action=ad,reward=click,propensity=p"))


def test_jsonl_with_iso_timestamps_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    rows = [
        {"ad": "c1", "click": True, "p": 0.5, "ts": "2026-11-27T10:00:00Z", "country": "DE"},
        {"ad": "c2", "click": 0, "p": 0.25, "ts": 1795773601, "country": "FR"},  # epoch seconds
        "not json",
        {"ad": "c2", "click": 1, "ts": "2026-11-27T10:00:02"},  # no propensity
        {"ad": "c1", "click": 1, "p": 0.5, "ts": "2026-11-27 10:00:03+01:00"},  # no country
    ]
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n\n")
    mapping = ColumnMapping.parse(
        {
            "action": "ad",
            "reward": "click",
            "propensity": "p",
            "timestamp": "ts",
            "context": ["country"],
        }
    )
    result = read_logs(path, mapping, on_bad="skip")
    assert result.bad_row_numbers == [3, 4]
    assert [b.line for b in result.bad_rows] == [3, 4]
    d = result.data
    assert d.n == 3
    assert d.reward.tolist() == [1.0, 0.0, 1.0]
    assert d.timestamp_ms.tolist() == [1_795_773_600_000, 1_795_773_601_000, 1_795_770_003_000]
    assert [d.contexts[c] for c in d.context] == ["country=DE", "country=FR", "country=*"]


def test_parquet_round_trip_and_missing_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "logs.parquet"
    table = pa.table({"ad": ["c1", "c2", "c1"], "click": [1.0, 0.0, 1.0], "p": [0.5, 0.5, 2.0]})
    pq.write_table(table, path)
    result = read_logs(
        path, ColumnMapping.parse("action=ad,reward=click,propensity=p"), on_bad="skip"
    )
    assert result.bad_row_numbers == [3] and result.bad_rows[0].line is None
    assert result.data.n == 2
    with pytest.raises(ReplayError, match="not in the file"):
        read_logs(path, ColumnMapping.parse("action=ad,reward=clicked,propensity=p"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("action=ad,reward=click", "propensity"),
        ("action=ad,reward=click,propensity=p,colour=x", "unknown role"),
        ("action", "role=column"),
    ],
)
def test_mapping_errors_say_what_to_fix(spec: str, message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        ColumnMapping.parse(spec)


def test_mapping_from_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("action: ad\nreward: click\npropensity: p\ncontext: [country, device]\n")
    m = ColumnMapping.parse(str(path))
    assert m.context == ("country", "device") and m.propensity == "p"


def test_jsonl_columns_can_be_nested_paths(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    rows = [
        {"creative_id": "c1", "propensity": 0.5, "reward": 1, "context": {"country": "DE"}},
        {"creative_id": "c2", "propensity": 0.5, "reward": 0, "context": {}},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    mapping = ColumnMapping.parse(
        "action=creative_id,reward=reward,propensity=propensity,context=context.country"
    )
    d = read_logs(path, mapping).data
    assert [d.contexts[c] for c in d.context] == ["country=DE", "country=*"]


def test_fast_and_line_exact_csv_readers_agree(tmp_path: Path) -> None:
    from services.analysis.replay import _load
    from services.analysis.replay_files import read_csv_arrow

    path = tmp_path / "logs.csv"
    _write_csv(path, 5_000, {})
    text = path.read_text().replace(",DE,", ',"DE",', 50).replace(",FR,", ", FR ,", 50)
    path.write_text(text)  # quoted fields and padded values
    assert read_csv_arrow(path, list(MAPPING.columns())) is not None  # the fast path reads it
    fast = read_logs(path, MAPPING).data
    exact = _load(path, MAPPING, "csv", "fail", fast=False).data
    assert fast.contexts == exact.contexts and fast.actions == exact.actions
    for col in ("context", "action", "reward", "propensity", "timestamp_ms"):
        assert np.array_equal(getattr(fast, col), getattr(exact, col)), col
    assert np.array_equal(fast.extra["row"], exact.extra["row"])
    assert "country=FR|device=mobile" in fast.contexts  # padding stripped
