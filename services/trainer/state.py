"""What the trainer knows from Kafka: campaigns, creatives, buffered rewards, and when each
campaign is due to retrain. No torch here, so `admuse train` can check its input quickly.

Retraining follows information, not counts: with click rewards ~99 % of rows are zeros and a
new model on a few more zeros is the same model. A campaign is due when, after the floor
(`floor_s`: the time `retrain_floor_rewards` rewards take at the traffic measured since the
last version, at least `retrain_floor_min_s`, at most `retrain_every_minutes`), one of these
holds (the reason is logged with the model):

- ``positives``: new rewarded decisions ≥ max(`retrain_min_new_positives`,
  `retrain_positive_growth` × the positives the last model saw) — versions get sparser as the
  evidence grows;
- ``shift``: a creative's CTR since the last version differs from its CTR before by
  `retrain_shift_z` standard errors, or a creative the last model never saw (a new challenger)
  has `retrain_shift_min_impressions` new impressions;
- ``error``: the last model's log-loss on the rewards that arrived since exceeds its
  held-out log-loss by `retrain_loss_increase` (set by the service: `mark_stale`);
- ``time``: `retrain_every_minutes` passed with any new positive.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import structlog
from aiokafka import ConsumerRecord

from services.common.codec import CodecError, RecordCodec, SchemaRegistry
from services.common.creative_space import CreativeSpace, EncodingError
from services.common.lifecycle import is_serving
from services.common.topics import Topics
from services.trainer.buffer import RewardRow, TrainingBuffer
from services.trainer.settings import Settings

__all__ = ["TrainerState"]

log = structlog.get_logger("trainer")
_SINCE_MAX = 50_000


class TrainerState:
    """What the trainer knows: campaigns, creatives, the buffer and the retrain counters."""

    def __init__(
        self, settings: Settings, registry: SchemaRegistry, topics: Topics, buffer: TrainingBuffer
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.buffer = buffer
        self.campaigns: dict[str, dict[str, Any]] = {}
        self.creatives: dict[str, dict[str, Any]] = {}
        self.new_rewards: Counter[str] = Counter()
        self.new_positives: Counter[str] = Counter()
        self.last_trained: dict[str, float] = {}
        self.stale: set[str] = set()
        self.reasons: dict[str, str] = {}
        # per campaign: creative_id -> [reward sum, impressions] now and at the last version
        self._counts: dict[str, dict[str, list[float]]] = {}
        self._counts_at_train: dict[str, dict[str, tuple[float, float]]] = {}
        self._positives_at_train: dict[str, int] = {}
        self._since: dict[str, list[RewardRow]] = {}
        # the last model built per campaign: (digest of its exported networks, BuiltModel)
        self.last_model: dict[str, tuple[str, Any]] = {}
        self.rejected: Counter[str] = Counter()
        self.unshown: Counter[str] = Counter()  # per campaign: rewards of decisions never shown
        self._codecs: dict[str, RecordCodec] = {
            topics.campaigns.name: registry.codec("Campaign"),
            topics.creatives.name: registry.codec("Creative"),
            topics.rewards.name: registry.codec("Reward"),
        }

    def apply(self, msg: ConsumerRecord) -> None:
        """Take one record in; bad input is counted and logged, never raised."""
        if msg.topic == self.topics.rewards.name:
            self.buffer.note_offset(msg.topic, msg.partition, msg.offset)
        if msg.value is None:  # tombstone on a compacted topic: forget the key
            key = (msg.key or b"").decode("utf-8", "replace")
            known = self.campaigns if msg.topic == self.topics.campaigns.name else self.creatives
            known.pop(key, None)
            return
        try:
            rec = self._codecs[msg.topic].decode(msg.value)
            if msg.topic == self.topics.rewards.name:
                row = RewardRow.from_record(rec)
                if not rec.get("shown", True):  # never shown: not an impression, no row
                    self.unshown[rec["campaign_id"]] += 1
                else:
                    self.add_reward(rec["campaign_id"], row)
            elif msg.topic == self.topics.campaigns.name:
                CreativeSpace.from_attributes(rec["attributes"])  # refuse unusable spaces
                self.campaigns[rec["campaign_id"]] = rec
            else:
                self.creatives[rec["creative_id"]] = rec
        except (CodecError, EncodingError, ValueError, KeyError, TypeError) as exc:
            reason = getattr(exc, "reason", type(exc).__name__)
            self.rejected[reason] += 1
            log.warning(
                "record_skipped",
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                reason=reason,
                error=str(exc),
            )

    def add_reward(self, cid: str, row: RewardRow) -> bool:
        """Buffer one shown reward and count it toward the retrain triggers (False: a
        duplicate the buffer already holds)."""
        if not self.buffer.add(cid, row):
            return False
        self._count(cid, row)
        return True

    def _count(self, cid: str, row: RewardRow) -> None:
        self.new_rewards[cid] += 1
        self.new_positives[cid] += row.reward > 0
        c = self._counts.setdefault(cid, {}).setdefault(row.creative_id, [0.0, 0.0])
        c[0] += min(max(row.reward, 0.0), 1.0)
        c[1] += 1
        since = self._since.setdefault(cid, [])
        if len(since) < _SINCE_MAX:
            since.append(row)

    def since_trained(self, cid: str) -> list[RewardRow]:
        """Rewards that arrived after the last training started (the first `_SINCE_MAX`)."""
        return list(self._since.get(cid, []))

    def mark_trained(self, cid: str, now: float) -> None:
        """A training run starts on the buffer as it is: what it saw is the new baseline."""
        self.new_rewards[cid] = 0
        self.new_positives[cid] = 0
        self.last_trained[cid] = now
        self.stale.discard(cid)
        self._since[cid] = []
        self._positives_at_train[cid] = sum(r.reward > 0 for r in self.buffer.rows(cid))
        self._counts_at_train[cid] = {k: (v[0], v[1]) for k, v in self._counts.get(cid, {}).items()}

    def mark_stale(self, cid: str) -> None:
        """The last model's error on new rewards grew past its held-out error."""
        self.stale.add(cid)

    def floor_s(self, cid: str, now: float) -> float:
        """Least time between versions: what `retrain_floor_rewards` take at the current rate."""
        s = self.settings
        elapsed = now - self.last_trained.get(cid, now)
        rate = self.new_rewards[cid] / elapsed if elapsed > 0 else 0.0
        floor = s.retrain_floor_rewards / rate if rate > 0 else math.inf
        return min(max(floor, s.retrain_floor_min_s), s.retrain_every_minutes * 60)

    def due(self, now: float) -> list[str]:
        """Campaigns with enough data whose last version no longer says what the data say
        (`reasons[cid]` tells why)."""
        s = self.settings
        out = []
        for cid, new in self.new_rewards.items():
            if new <= 0 or cid not in self.campaigns or not is_serving(self.campaigns[cid]):
                continue  # a paused or stopped campaign is not retrained (lifecycle.py)
            reason = self._reason(cid, now)
            if reason is None:
                continue
            rows = self.buffer.rows(cid)
            if len(rows) >= s.min_rows and sum(r.reward > 0 for r in rows) >= s.min_positives:
                self.reasons[cid] = reason
                out.append(cid)
        return out

    def _reason(self, cid: str, now: float) -> str | None:
        s = self.settings
        # the clock of a campaign never trained in this process starts with its first reward
        elapsed = now - self.last_trained.setdefault(cid, now)
        if elapsed < self.floor_s(cid, now):
            return None
        positives = self.new_positives[cid]
        wanted = max(s.retrain_min_new_positives,
                     s.retrain_positive_growth * self._positives_at_train.get(cid, 0))  # fmt: skip
        if positives >= wanted:
            return "positives"
        if cid in self.stale:
            return "error"
        if self._shifted(cid):
            return "shift"
        if positives > 0 and elapsed >= s.retrain_every_minutes * 60:
            return "time"
        return None

    def _shifted(self, cid: str) -> bool:
        s = self.settings
        before = self._counts_at_train.get(cid, {})
        for creative, (s_now, n_now) in self._counts.get(cid, {}).items():
            s0, n0 = before.get(creative, (0.0, 0.0))
            s1, n1 = s_now - s0, n_now - n0
            if n1 < s.retrain_shift_min_impressions:
                continue
            if n0 <= 0:
                return True  # a creative the last model never saw
            p = (s0 + s1 + 0.5) / (n0 + n1 + 1.0)
            se = math.sqrt(p * (1 - p) * (1 / n0 + 1 / n1))
            if abs(s1 / n1 - s0 / n0) >= s.retrain_shift_z * se:
                return True
        return False
