import gzip
from pathlib import Path

import pytest

from services.trainer.buffer import BufferFileError, RewardRow, TrainingBuffer


def _row(i: int, at: int = 0, reward: float = 0.0) -> RewardRow:
    return RewardRow(f"d{i}", "country=DE", f"c{i % 3}", 0.25, reward, at + i)


def test_duplicates_count_once() -> None:
    buf = TrainingBuffer(100, 10**9)
    assert buf.add("spring", _row(1))
    assert not buf.add("spring", _row(1))
    assert len(buf.rows("spring")) == 1


def test_bounded_by_count_per_campaign_keeping_the_newest() -> None:
    buf = TrainingBuffer(5, 10**9)
    buf.extend("spring", [_row(i) for i in range(12)])
    buf.extend("autumn", [_row(i) for i in range(3)])
    assert [r.decision_id for r in buf.rows("spring")] == ["d7", "d8", "d9", "d10", "d11"]
    assert len(buf.rows("autumn")) == 3


def test_old_rows_are_evicted_by_age() -> None:
    buf = TrainingBuffer(100, max_age_ms=1000)
    buf.extend("spring", [_row(i, at=i * 100) for i in range(30)])
    dropped = buf.evict(now_ms=3000)
    assert dropped > 0
    assert all(r.decided_at_ms >= 2000 for r in buf.rows("spring"))


def test_save_and_load_keep_rows_and_offsets(tmp_path: Path) -> None:
    path = tmp_path / "buf.json.gz"
    buf = TrainingBuffer(100, 10**9, path)
    buf.extend("spring", [_row(i, reward=float(i % 2)) for i in range(10)])
    buf.note_offset("admuse.rewards", 2, 41)
    buf.save()
    again = TrainingBuffer.load(path, 100, 10**9)
    assert again.rows("spring") == buf.rows("spring")
    assert again.offsets == {"admuse.rewards": {2: 42}}
    assert not again.add("spring", _row(3))


def test_missing_or_corrupt_file_asks_for_a_rebuild(tmp_path: Path) -> None:
    with pytest.raises(BufferFileError, match="no buffer file"):
        TrainingBuffer.load(tmp_path / "none.json.gz", 10, 10)
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(BufferFileError, match="unreadable"):
        TrainingBuffer.load(bad, 10, 10)
    wrong = tmp_path / "wrong.json.gz"
    wrong.write_bytes(gzip.compress(b'{"format": 99}'))
    with pytest.raises(BufferFileError, match="format"):
        TrainingBuffer.load(wrong, 10, 10)


@pytest.mark.parametrize(
    "change", [{"propensity": 0.0}, {"propensity": 1.5}, {"reward": float("nan")}]
)
def test_unusable_rewards_are_refused(change: dict) -> None:
    rec = {
        "decision_id": "d",
        "segment": "*",
        "creative_id": "c",
        "propensity": 0.5,
        "reward": 1.0,
        "decided_at": 5,
    } | change
    with pytest.raises(ValueError):
        RewardRow.from_record(rec)
