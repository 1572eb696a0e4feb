"""Trainer settings: `ADMUSE_TRAINER_*` (plus the shared Kafka, log and model-store groups)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings
from services.common.signing import Signer
from services.trainer.quality import QualityGate

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
    health_host: str = Field("127.0.0.1", description="Address of /healthz, /readyz, /metrics.")
    health_port: int = Field(
        0, ge=0, le=65535, description="Port of /healthz, /readyz, /metrics; 0: not served."
    )
    seed: int = Field(7, description="Seed for every model (same seed, same data: same model).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when torch sees a GPU, else CPU."
    )
    profile: Literal["full", "small"] = Field(
        "full", description="Network/step sizes: full, or small for tests and demos."
    )
    gan_steps: int | None = Field(None, ge=1, description="Override the profile's GAN steps.")
    reward_epochs: int | None = Field(
        None, ge=1, description="Override the profile's reward-model epochs over the data."
    )
    reward_max_steps: int | None = Field(
        None, ge=1, description="Override the profile's cap on reward-model optimizer steps."
    )
    reward_bends: int | None = Field(
        None,
        ge=0,
        le=64,
        description="Radial-basis bumps per numeric/color column in the reward model "
        "(0: linear, monotone per segment); default 4.",
    )
    # Signing and the quality gate (docs/contracts.md "Model artifacts")
    signing_key: SecretStr | None = Field(
        None, description="Ed25519 private key signing every model (`admuse keys generate`)."
    )
    signing_key_file: Path | None = Field(
        None, description="File holding the signing key (a mounted secret), instead of the env."
    )
    gate_min_auc_margin: float = Field(
        0.02, ge=0.0, le=0.5, description="Publish only if reward AUC > 0.5 + this margin."
    )
    gate_max_logloss_ratio: float = Field(
        1.0, gt=0.0, description="Publish only if log-loss < this × the base-rate model's."
    )
    gate_max_ece: float = Field(
        0.1, gt=0.0, le=1.0, description="Publish only if the held-out calibration error ≤ this."
    )
    gate_min_condition_margin: float = Field(
        0.0,
        ge=-1.0,
        le=1.0,
        description="Publish only if condition fidelity > chance + this (-1: no check).",
    )
    metrics_port: int = Field(
        -1, ge=-1, le=65535, description="Port of the Prometheus /metrics endpoint (-1: none)."
    )

    @property
    def buffer_max_age_ms(self) -> int:
        return int(self.buffer_max_age_hours * 3600_000)

    def gate(self) -> QualityGate:
        return QualityGate(
            self.gate_min_auc_margin,
            self.gate_max_logloss_ratio,
            self.gate_max_ece,
            self.gate_min_condition_margin,
        )

    def signer(self) -> Signer:
        """The signing key from ADMUSE_TRAINER_SIGNING_KEY or _FILE; ValueError when unset."""
        if self.signing_key is not None and self.signing_key.get_secret_value().strip():
            return Signer(self.signing_key.get_secret_value())
        if self.signing_key_file is not None:
            try:
                return Signer(self.signing_key_file.read_text())
            except OSError as exc:
                raise ValueError(f"cannot read ADMUSE_TRAINER_SIGNING_KEY_FILE: {exc}") from exc
        raise ValueError(
            "no signing key: set ADMUSE_TRAINER_SIGNING_KEY or ADMUSE_TRAINER_SIGNING_KEY_FILE "
            "(make a pair with `admuse keys generate`; inference trusts the public half)"
        )
