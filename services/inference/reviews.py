"""The curator's reviews, every `retire_check_s` (curator.py's docstring has the rules):
challengers promoted or retired by `ChallengerBudget.decide`, then proven creatives retired by
`bandit.Retirement`. A mixin of `Curator`: it works on the curator's state, policy and
publisher."""

from __future__ import annotations

import asyncio
from typing import Any

from services.common.lifecycle import is_serving
from services.common.logging import get_logger
from services.common.segment import ALL_SEGMENTS
from services.inference.bandit import Arm
from services.inference.challengers import (
    PROMOTE,
    PROMOTED,
    is_challenger,
)
from services.inference.gate import pinned

__all__ = ["Reviews"]

_log = get_logger("services.inference.curator")


class Reviews:
    """Curator's review methods (mixed into `Curator`)."""

    # -- retirement ---------------------------------------------------------------------

    async def run_retirement(self) -> None:
        """Review every campaign × segment forever, every `retire_check_s`."""
        while True:
            await asyncio.sleep(self._settings.retire_check_s)
            try:
                await self.review_retirement()
            except Exception as exc:  # a failed review must not end the reviews
                _log.error("retirement_review_failed", error=repr(exc))

    async def review_retirement(self) -> int:
        """One review of every campaign; returns how many creatives were retired.

        A creative made for one segment is judged in that segment, against everything that
        serves it there; a creative for every segment on the campaign roll-up ('*'), against
        the other campaign-wide creatives.
        """
        retired = 0
        for campaign_id, campaign in list(self._state.campaigns.items()):
            if not is_serving(campaign):
                continue  # no traffic while paused: nothing to judge, nobody to retire
            decided = await self._judge_challengers(campaign_id)
            retired += decided.count("retire")
            bundle = self.models.get(campaign_id)
            if bundle is not None and self._settings.curate:  # into slots freed or grown
                await self._add_candidates(campaign_id, bundle, refill=True)
            live = self._state.live_creatives(campaign_id)
            scopes = sorted({c["segment"] for c in live if c.get("segment")})
            for segment in [*scopes, ALL_SEGMENTS]:
                if segment == ALL_SEGMENTS:
                    pool = [c for c in live if c.get("segment") is None]
                else:
                    pool = self._state.live_creatives(campaign_id, segment)
                due = self._review(campaign_id, campaign, segment, pool)
                for cid in due:
                    record = self._state.creatives.get(cid)
                    if record is None or record["status"] != "live":
                        continue
                    await self._retire(record)
                    retired += 1
        return retired

    async def _judge_challengers(self, campaign_id: str) -> list[str]:
        """Promote or retire every challenger that is due (`ChallengerBudget.decide`)."""
        now_ms = self._clock() * 1000
        out = []
        for c in self._state.live_creatives(campaign_id):
            if not is_challenger(c) or c.get("pinned"):
                continue  # a pinned challenger is a person's to judge
            segment = c.get("segment") or ALL_SEGMENTS
            if pinned(self._state, campaign_id, segment):
                continue  # a pin holds the segment's traffic: no evidence comes meanwhile
            stats = self._state.segment_stats(campaign_id, segment, c["creative_id"])
            clicks, n = (stats.reward_sum, stats.impressions) if stats else (0.0, 0)
            born = c.get("approved_at") or c.get("created_at")  # approval starts the clock
            age_s = max(0.0, (now_ms - _ms(born, now_ms)) / 1000)
            verdict = self.budget.decide(
                clicks, n, age_s, self._proven(campaign_id, segment),
                self.segment_ctr(campaign_id, segment),
            )  # fmt: skip
            if verdict is None:
                continue
            out.append(verdict)
            self._metrics.challengers_decided.labels(campaign_id, verdict).inc()
            _log.info("challenger_decided", campaign_id=campaign_id, creative_id=c["creative_id"],
                      segment=segment, verdict=verdict, impressions=n, clicks=clicks,
                      age_s=round(age_s, 1))  # fmt: skip
            if verdict == PROMOTE:
                promoted = {**c, "stage": PROMOTED}
                await self._publish(c["creative_id"], promoted)
                self._state.apply_creative(c["creative_id"], promoted)
            else:
                await self._retire(c)
        return out

    def _proven(self, campaign_id: str, segment: str) -> list[Arm]:
        pool = [c for c in self._state.live_creatives(campaign_id, segment) if not is_challenger(c)]
        return self._policy.arms(campaign_id, segment, pool)

    async def _retire(self, record: dict[str, Any]) -> None:
        retired = {**record, "status": "retired", "retired_at": int(self._clock() * 1000)}
        await self._publish(record["creative_id"], retired)
        self._state.apply_creative(record["creative_id"], retired)
        self._metrics.creatives_retired.labels(record["campaign_id"]).inc()
        _log.info("creative_retired", campaign_id=record["campaign_id"],
                  creative_id=record["creative_id"], segment=record.get("segment"))  # fmt: skip

    def _review(
        self, campaign_id: str, campaign: dict[str, Any], segment: str, pool: list[dict[str, Any]]
    ) -> list[str]:
        pool = [c for c in pool if not is_challenger(c)]  # judged by the budget's rules
        if len(pool) <= 2:
            return []
        own = None if segment == ALL_SEGMENTS else segment
        keep_catalog = not campaign.get("allow_retire_catalog", False)
        protected = {
            c["creative_id"]
            for c in pool
            if c.get("segment") != own
            or c.get("pinned")
            or (keep_catalog and c["origin"] == "catalog")
            or self._impressions(campaign_id, segment, c) < self._settings.retire_min_impressions
        }
        arms = self._policy.arms(campaign_id, segment, pool)
        return self._retirement.review(f"{campaign_id}/{segment}", arms, protected)

    def _impressions(self, campaign_id: str, segment: str, creative: dict[str, Any]) -> int:
        stats = self._state.segment_stats(campaign_id, segment, creative["creative_id"])
        return stats.impressions if stats else 0


def _ms(value: Any, default: float) -> float:
    """A timestamp-millis field as decoded (datetime) or as written here (int ms)."""
    if value is None:
        return default
    if hasattr(value, "timestamp"):
        return value.timestamp() * 1000
    return float(value)
