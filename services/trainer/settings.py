"""Trainer settings: `ADMUSE_TRAINER_*` (plus the shared Kafka, log and model-store groups)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings

__all__ = ["Settings"]


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ADMUSE_TRAINER_", frozen=True, extra="ignore")

    retrain_min_new_positives: int = Field(
        30, ge=1, description="New rewarded decisions that justify a new model (at least)."
    )
    retrain_positive_growth: float = Field(
        0.25,
        ge=0,
        description="...and at least this fraction of the positives the last model saw.",
    )
    retrain_shift_z: float = Field(
        3.0, gt=0, description="A creative's CTR moved this many standard errors: retrain."
    )
    retrain_shift_min_impressions: int = Field(
        200, ge=1, description="New impressions a creative needs before its shift counts."
    )
    retrain_loss_increase: float = Field(
        0.1,
        ge=0,
        description="Retrain when the last model's log-loss on new rewards exceeds its "
        "held-out log-loss by this fraction.",
    )
    retrain_floor_rewards: int = Field(
        2000, ge=1, description="Floor between versions: the time this many rewards take."
    )
    retrain_floor_min_s: float = Field(
        15.0, ge=0, description="Floor between versions: never less than this."
    )
    retrain_every_minutes: float = Field(
        30.0, gt=0, description="Retrain a campaign with any new positive after this long."
    )
    min_rows: int = Field(500, ge=20, description="Fewest usable rewards to train on.")
    min_positives: int = Field(20, ge=1, description="Fewest rewarded decisions to train on.")
    buffer_max_rows: int = Field(200_000, ge=100, description="Rewards kept per campaign.")
    buffer_max_age_hours: float = Field(
        168.0, gt=0, description="Rewards older than this (by decided_at) leave the buffer."
    )
    buffer_path: Path = Field(
        Path(".run/trainer/buffer.json.gz"), description="Persisted training buffer."
    )
    seed: int = Field(7, description="Seed for every model (same seed, same data: same model).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when torch sees a GPU, else CPU."
    )
    profile: Literal["full", "small"] = Field(
        "full", description="Network/step sizes: full, or small for tests and demos."
    )
    gan_steps: int | None = Field(None, ge=1, description="Override the profile's GAN steps.")

    @property
    def buffer_max_age_ms(self) -> int:
        return int(self.buffer_max_age_hours * 3600_000)
