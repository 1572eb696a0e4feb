"""From buffered rewards to a stored model: dataset, train, export, quality, store.

`train_campaign` is the trainer's public entry point: the service loop and `admuse train`
both call it with the trainer's `Settings` (profile, steps, seed, device, quality gate).
`build_model` is pure computation (no Kafka) and ends with the quality gate's verdict in the
metadata (`quality`: passed, reasons, thresholds); `store_model` refuses a model that failed
the gate, writes the artifacts and their Ed25519 signature (`signature.json`, see
services/common/signing.py) to the model store and returns the `ModelPublished` record. The
service and `admuse train` share both; announcing the record on `admuse.models` is theirs
(this module sends nothing to Kafka).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from services.common.creative_space import CreativeSpace, EncodingError
from services.common.model_store import ModelStore
from services.common.signing import SIGNATURE_FILE, Signer
from services.trainer.buffer import RewardRow
from services.trainer.export import OPSET, ExportedModels, export_and_check, onnx_session
from services.trainer.model import Generator, RewardModel
from services.trainer.quality import QualityGate, quality_report
from services.trainer.settings import Settings
from services.trainer.train import (
    Progress,
    TrainConfig,
    TrainingData,
    TrainingError,
    pick_device,
    train,
)

__all__ = [
    "BuiltModel",
    "QualityRefused",
    "build_dataset",
    "build_model",
    "store_model",
    "train_campaign",
    "train_config",
]

METADATA_FORMAT = 1


class QualityRefused(TrainingError):
    """The model does not beat the baselines on held-out data; it is not published."""

    reason = "quality_gate"


@dataclass
class BuiltModel:
    campaign_id: str
    version: str
    seed: int
    training_rows: int
    metadata: dict[str, Any]
    exported: ExportedModels
    metrics: dict[str, float] = field(default_factory=dict)
    generator: Generator | None = None  # the torch modules that were exported (CPU, eval)
    reward_model: RewardModel | None = None

    @property
    def quality(self) -> dict[str, Any]:
        return dict(self.metadata.get("quality") or {"passed": False, "reasons": ["no verdict"]})

    def files(self) -> dict[str, tuple[str, bytes]]:
        """Artifact role → (file name, bytes)."""
        meta = json.dumps(self.metadata, indent=1, sort_keys=True).encode()
        return {
            "generator": ("generator.onnx", self.exported.generator),
            "reward_model": ("reward_model.onnx", self.exported.reward_model),
            "metadata": ("metadata.json", meta),
        }


def build_dataset(
    campaign: Mapping[str, Any],
    creatives: Mapping[str, Mapping[str, Any]],
    rows: Sequence[RewardRow],
) -> tuple[TrainingData, dict[str, int]]:
    """Encode the rows whose creative is known and fits the space; count what was skipped."""
    space = CreativeSpace.from_attributes(campaign["attributes"])
    cid = campaign["campaign_id"]
    encoded: dict[str, np.ndarray | None] = {}
    skipped = {"unknown_creative": 0, "bad_creative": 0}
    keep: list[tuple[RewardRow, np.ndarray]] = []
    for row in rows:
        if row.creative_id not in encoded:
            rec = creatives.get(row.creative_id)
            try:
                encoded[row.creative_id] = (
                    None
                    if rec is None or rec.get("campaign_id") != cid
                    else space.encode(rec["attributes"])
                )
            except EncodingError:
                encoded[row.creative_id] = np.empty(0)
        vec = encoded[row.creative_id]
        if vec is None:
            skipped["unknown_creative"] += 1
        elif vec.size == 0:
            skipped["bad_creative"] += 1
        else:
            keep.append((row, vec))
    segments = sorted({r.segment for r, _ in keep})
    index = {s: i for i, s in enumerate(segments)}
    catalog = []
    for rec in creatives.values():
        if (
            rec.get("campaign_id") == cid
            and rec.get("origin") == "catalog"
            and rec.get("status") == "live"
        ):
            try:
                catalog.append(space.encode(rec["attributes"]))
            except EncodingError:
                pass
    data = TrainingData(
        space=space,
        segments=segments,
        x=np.stack([v for _, v in keep]) if keep else np.zeros((0, space.creative_dim), np.float32),
        segment=np.array([index[r.segment] for r, _ in keep], dtype=np.int64),
        reward=np.array([r.reward for r, _ in keep], dtype=np.float64),
        propensity=np.array([r.propensity for r, _ in keep], dtype=np.float64),
        catalog=np.stack(catalog) if catalog else np.zeros((0, space.creative_dim), np.float32),
        window_ms=(min(at), max(at)) if (at := [r.decided_at_ms for r, _ in keep]) else None,
    )
    return data, skipped


def _version(now: datetime, exported: ExportedModels) -> str:
    digest = hashlib.sha256(exported.generator + exported.reward_model).hexdigest()[:6]
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{digest}"


def build_model(
    campaign: Mapping[str, Any],
    creatives: Mapping[str, Mapping[str, Any]],
    rows: Sequence[RewardRow],
    cfg: TrainConfig,
    *,
    seed: int = 7,
    device: torch.device | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    gate: QualityGate | None = None,
) -> BuiltModel:
    """Train, export, verify and judge; raises TrainingError or ExportError instead of an
    unusable model (a model that fails the quality gate is returned with its verdict)."""
    data, skipped = build_dataset(campaign, creatives, rows)
    if not data.segments:
        raise TrainingError(
            f"campaign {campaign['campaign_id']}: none of {len(rows)} rewards has a known "
            f"creative ({skipped}); publish the creatives to admuse.creatives first"
        )
    result = train(data, cfg, seed=seed, device=device, progress=progress)
    if progress:
        progress("export", 0, 1)
    exported = export_and_check(result.generator, result.reward_model, seed=seed)
    if progress:
        progress("export", 1, 1)
    metrics = dict(result.metrics)
    metrics.update(_quality(data, exported, seed))
    metrics["onnx_generator_max_diff"] = exported.generator_max_diff
    metrics["onnx_reward_max_diff"] = exported.reward_max_diff
    metrics.update({f"skipped_{k}": float(v) for k, v in skipped.items()})
    now = now or datetime.now(UTC)
    version = _version(now, exported)
    window = data.window_ms
    metadata = {
        "format": METADATA_FORMAT,
        "campaign_id": campaign["campaign_id"],
        "campaign_revision": campaign.get("revision"),
        "version": version,
        "segments": data.segments,
        "noise_dim": result.generator.noise_dim,
        "gumbel_dim": data.space.gumbel_dim,
        "creative_dim": data.space.creative_dim,
        "encoding": data.space.to_json(),
        "inputs": {
            "generator": ["noise", "segment", "gumbel"],
            "reward_model": ["segment", "creative"],
        },
        "outputs": {"generator": "creative", "reward_model": "p_reward"},
        "metrics": metrics,
        "quality": (gate or QualityGate()).verdict(metrics, len(data.segments)),
        "seed": seed,
        "training_rows": len(data.x),
        "training_window": {
            "from": _iso(window[0]) if window else None,
            "to": _iso(window[1]) if window else None,
        },
        "versions": {"torch": torch.__version__, "opset": OPSET, "onnx": _onnx_version()},
        "device": result.device,
        "config": cfg.to_json(),
        "created_at": now.isoformat().replace("+00:00", "Z"),
    }
    return BuiltModel(
        campaign["campaign_id"],
        version,
        seed,
        len(data.x),
        metadata,
        exported,
        metrics,
        result.generator,
        result.reward_model,
    )


def train_config(settings: Settings) -> TrainConfig:
    """The training configuration the settings' profile and overrides give."""
    base = TrainConfig.small() if settings.profile == "small" else TrainConfig()
    return base.with_overrides(
        gan_steps=settings.gan_steps,
        reward_epochs=settings.reward_epochs,
        max_reward_steps=settings.reward_max_steps,
        reward_bends=settings.reward_bends,
    )


def train_campaign(
    settings: Settings,
    campaign: Mapping[str, Any],
    creatives: Mapping[str, Mapping[str, Any]],
    rows: Sequence[RewardRow],
    *,
    seed: int | None = None,
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> BuiltModel:
    """Train one campaign's generator and reward model as the trainer service does: the
    settings' profile, seed (unless `seed` is given), device and quality gate. Returns the
    judged model (`store_model` writes it); raises TrainingError/ExportError/EncodingError."""
    return build_model(
        campaign,
        creatives,
        rows,
        train_config(settings),
        seed=settings.seed if seed is None else seed,
        device=device if device is not None else pick_device(settings.device),
        progress=progress,
        gate=settings.gate(),
    )


def store_model(
    store: ModelStore, built: BuiltModel, signer: Signer, *, now: datetime | None = None
) -> dict[str, Any]:
    """Write the three artifacts and their signature; return the ModelPublished record.
    Raises `QualityRefused` (writing nothing) when the model failed the quality gate."""
    quality = built.quality
    if not quality.get("passed"):
        raise QualityRefused(
            f"campaign {built.campaign_id} model {built.version} failed the quality gate: "
            + "; ".join(quality.get("reasons", []))
        )
    files = built.files()
    files["signature"] = (SIGNATURE_FILE, signer.sign(built.campaign_id, built.version, files))
    artifacts = []
    for role, (name, data) in files.items():
        ref = store.put(f"{built.campaign_id}/{built.version}/{name}", data)
        artifacts.append({"name": role, "uri": ref.uri, "sha256": ref.sha256, "size": ref.size})
    return {
        "model_name": built.campaign_id,
        "campaign_id": built.campaign_id,
        "version": built.version,
        "artifacts": artifacts,
        "metrics": {k: float(v) for k, v in built.metrics.items() if np.isfinite(v)},
        "training_rows": built.training_rows,
        "seed": built.seed,
        "published_at": now or datetime.now(UTC),
    }


def _quality(data: TrainingData, exported: ExportedModels, seed: int) -> dict[str, float]:
    gen, rm = onnx_session(exported.generator), onnx_session(exported.reward_model)
    rng = np.random.default_rng(seed + 1)
    n_seg = len(data.segments)
    noise_dim = gen.get_inputs()[0].shape[1]

    def generate(s: int, n: int) -> np.ndarray:
        seg = np.zeros((n, n_seg), np.float32)
        seg[:, s] = 1.0
        u = rng.uniform(1e-9, 1.0, (n, data.space.gumbel_dim))
        feeds = {
            "noise": rng.standard_normal((n, noise_dim)).astype(np.float32),
            "segment": seg,
            "gumbel": (-np.log(-np.log(u))).astype(np.float32),
        }
        return gen.run(None, feeds)[0]

    def score(seg: np.ndarray, creative: np.ndarray) -> np.ndarray:
        return rm.run(None, {"segment": seg, "creative": creative.astype(np.float32)})[0][:, 0]

    pos = data.reward > 0
    weight = data.reward[pos] / np.clip(data.propensity[pos], 1e-6, None)
    return quality_report(
        data.space,
        data.segments,
        data.x[pos],
        data.segment[pos],
        weight,
        generate,
        score,
        data.catalog,
        seed=seed,
    )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _onnx_version() -> str:
    import onnx

    return onnx.__version__
