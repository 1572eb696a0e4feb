"""The curator's model swap (curator.py's docstring has the rules): fetch and verify the
artifacts, load and warm the sessions in a worker thread, then swap the campaign's entry in
`models` by one assignment; refuse (count, log, keep the old one) anything off. A mixin of
`Curator`."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from services.common.logging import get_logger
from services.common.model_store import (
    ArtifactTooLarge,
    ChecksumMismatch,
    OutsideStore,
)
from services.common.review import PENDING
from services.common.signing import SignatureError
from services.inference.artifacts import fetch_verified
from services.inference.models import ModelBundle, ModelRejected

__all__ = ["ModelSwap"]

_log = get_logger("services.inference.curator")


class ModelSwap:
    """Curator's model loading and rollback (mixed into `Curator`)."""

    # -- swap ---------------------------------------------------------------------------

    async def _load(self, record: dict[str, Any]) -> None:
        campaign_id, version = record["campaign_id"], record["version"]
        lock = self._locks.setdefault(campaign_id, asyncio.Lock())
        async with lock:
            latest = self._state.published.get(campaign_id)
            if latest is not None and latest["version"] != version:
                return  # overtaken by a newer publication
            if self.model_version(campaign_id) == version:
                return
            if (campaign_id, version) in self.rolled_back:
                return
            bundle = await self._try_load(record)
            if bundle is None and campaign_id not in self.models:
                # Nothing serves yet (a restart whose newest model is bad): fall back to the
                # newest earlier publication still in the topic that loads.
                for older in reversed(self._state.history.get(campaign_id, [])[:-1]):
                    if (campaign_id, older["version"]) not in self._refused:
                        bundle = await self._try_load(older)
                        if bundle is not None:
                            break
            if bundle is None:
                return
            old = self.model_version(campaign_id)
            if campaign_id in self.models:
                self.previous[campaign_id] = self.models[campaign_id]
            self.models[campaign_id] = bundle  # the swap: one reference assignment
            if self.on_swap is not None:
                self.on_swap(campaign_id, bundle.version, old)
            self._metrics.swaps.labels(campaign_id).inc()
            self._metrics.set_model(campaign_id, old, bundle.version)
            _log.info(
                "model_swapped_in", campaign_id=campaign_id, version=bundle.version, previous=old
            )
        if self._settings.curate:
            await self._add_candidates(campaign_id, bundle)

    async def _try_load(self, record: dict[str, Any]) -> ModelBundle | None:
        campaign_id, version = record["campaign_id"], record["version"]
        started = time.monotonic()
        try:
            bundle = await asyncio.to_thread(self._fetch_and_load, record)
        except Exception as exc:  # any failure refuses the model; the old one serves on
            reason = _reason_of(exc)
            self._refused.add((campaign_id, version))
            self._metrics.refused.labels(campaign_id, reason).inc()
            _log.error(
                "model_refused",
                detail="keeping the current one",
                campaign_id=campaign_id,
                version=version,
                reason=reason,
                error=str(exc),
                serving=self.model_version(campaign_id),
            )
            return None
        _log.info(
            "model_loaded",
            campaign_id=campaign_id,
            version=version,
            load_s=round(time.monotonic() - started, 3),
        )
        return bundle

    def _fetch_and_load(self, record: dict[str, Any]) -> ModelBundle:
        metadata, blobs = fetch_verified(
            self._store, self._keys, record, self._settings.max_artifact_bytes
        )
        bundle = ModelBundle.load(
            metadata, blobs["generator"], blobs["reward_model"], self._providers
        )
        if bundle.campaign_id != record["campaign_id"]:
            raise ModelRejected(
                "wrong_campaign",
                f"metadata is for {bundle.campaign_id!r}, published for {record['campaign_id']!r}",
            )
        return bundle

    async def revert(self, campaign_id: str, bad_version: str) -> str | None:
        """Serve the bundle `bad_version` replaced again and retire `bad_version`'s creatives;
        the restored version, or None when `bad_version` no longer serves."""
        async with self._locks.setdefault(campaign_id, asyncio.Lock()):
            previous = self.previous.get(campaign_id)
            if self.model_version(campaign_id) != bad_version or previous is None:
                return None
            self.rolled_back.add((campaign_id, bad_version))
            self.models[campaign_id] = previous
            self._metrics.set_model(campaign_id, bad_version, previous.version)
        for creative in list(self._state.creatives.values()):
            if (
                creative["campaign_id"] == campaign_id
                and creative.get("model_version") == bad_version
                and creative["status"] in ("live", PENDING)  # nor left waiting for review
            ):
                await self._retire(creative)
        return previous.version

    # -- candidates ---------------------------------------------------------------------


def _reason_of(exc: BaseException) -> str:
    if isinstance(exc, ChecksumMismatch):
        return "bad_sha256"
    if isinstance(exc, SignatureError):
        return exc.reason
    if isinstance(exc, OutsideStore):
        return "outside_store"
    if isinstance(exc, ArtifactTooLarge):
        return "too_large"
    if isinstance(exc, ModelRejected):
        return exc.reason
    if isinstance(exc, (FileNotFoundError, OSError)):
        return "unreadable"
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return "bad_metadata"
    return "load_failed"
