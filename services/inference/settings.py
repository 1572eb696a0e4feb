"""Settings of the inference service: `ADMUSE_INFERENCE_*` (plus the shared groups)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import HttpKeepAliveSetting, RequiredPseudonymSecret, ServiceSettings
from services.common.signing import TrustedKeys

__all__ = ["Settings"]


class Settings(ServiceSettings, RequiredPseudonymSecret, HttpKeepAliveSetting):
    """Everything `python -m services.inference` reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="ADMUSE_INFERENCE_", frozen=True, extra="ignore")

    api_keys: SecretStr = Field(
        description="Comma-separated API keys accepted in X-API-Key (HTTP) / x-api-key (gRPC)."
    )
    http_host: str = Field("0.0.0.0", description="Address the HTTP API listens on.")
    http_port: int = Field(8080, ge=1, le=65535, description="HTTP port.")
    grpc_port: int = Field(
        50051, ge=-1, le=65535, description="gRPC port (0: pick a free one, -1: no gRPC server)."
    )
    instance_id: str = Field(
        "inference-0", min_length=1, description="Names this replica in logs and spool files."
    )
    # Bandit
    # 0.5 %: every creative keeps a propensity >= floor / K for off-policy evaluation; 2 %
    # cost about a quarter more regret than MABWiser's Thompson sampling (bench_bandits.py)
    exploration_floor: float = Field(
        0.005, ge=0.0, lt=1.0, description="Share of traffic spread uniformly over the arms."
    )
    thompson_draws: int = Field(
        4000, ge=100, description="Monte-Carlo draws of prob_best when reviewing retirement."
    )
    policy_refresh_ms: int = Field(
        250, ge=0, description="Most often a segment's cached propensities are recomputed."
    )
    backoff_impressions: int = Field(
        200, ge=0, description="Segment impressions below which stats shrink toward '*'."
    )
    # Candidates and retirement
    curate: bool = Field(
        True, description="Generate and retire creatives (enable on one replica only)."
    )
    n_generate: int = Field(256, ge=1, description="Generator samples per segment after a swap.")
    n_neighbours: int = Field(
        256,
        ge=0,
        description="Candidates per segment drawn around its proven creatives (one or two "
        "attributes redrawn), scored beside the generator's.",
    )
    trust_radius: float = Field(
        0.2,
        ge=0.0,
        description="Candidates are ranked by predicted reward × exp(-d / trust_radius), d the "
        "distance (0..1) to the nearest proven creative (0: by prediction alone).",
    )
    incumbent_margin: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="A candidate is tested when its calibrated prediction exceeds the model's "
        "prediction for the incumbent times (1 - incumbent_margin).",
    )
    n_admit: int = Field(3, ge=0, description="Most creatives admitted per segment and model.")
    retire_threshold: float = Field(
        0.01, ge=0.0, le=1.0, description="prob_best below which a creative is a retire candidate."
    )
    retire_after_s: float = Field(
        600.0, ge=0.0, description="How long prob_best must stay below the threshold."
    )
    retire_min_impressions: int = Field(
        200, ge=0, description="Impressions a creative needs before it may be retired."
    )
    retire_check_s: float = Field(30.0, gt=0.0, description="How often retirement is checked.")
    challenger_share: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="Share of a segment's optimized traffic that unproven generated creatives "
        "share (0: none admitted).",
    )
    challenger_decide_s: float = Field(
        300.0, gt=0.0, description="Time within which every challenger is promoted or retired."
    )
    challenger_precision: float = Field(
        0.5,
        gt=0.0,
        le=2.0,
        description="Relative CTR precision (two standard errors) a challenger is judged at.",
    )
    challenger_early: float = Field(
        0.05,
        ge=0.0,
        lt=0.5,
        description="Sequential retirement: a challenger whose own data make it better than "
        "every proven creative with probability <= this is retired before its impressions are "
        "in (0: only at its impressions or deadline).",
    )
    challenger_weigh: bool = Field(
        True,
        description="A challenger uses its slot in proportion to its chance of beating the best "
        "proven creative (false: every challenger gets its full slot).",
    )
    max_prior_strength: float = Field(
        20.0,
        ge=1.0,
        description="Most pseudo-impressions the reward model's prediction is worth (scaled "
        "down by its held-out AUC and calibration).",
    )
    providers: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime providers: auto (CUDA when usable, else CPU)."
    )
    # Decision log
    decision_buffer: int = Field(
        10_000, ge=1, description="Decisions held in memory before spilling to the spool file."
    )
    decision_batch: int = Field(500, ge=1, description="Most decisions sent per batch.")
    decision_linger_ms: float = Field(
        20.0,
        ge=0,
        le=1000,
        description="How long the decision log gathers decisions before sending a batch "
        "(fewer, larger produce requests: less CPU for the service and the broker).",
    )
    decision_watermark_ms: int = Field(
        200,
        ge=0,
        description="How often this replica states how far its decisions are complete (a "
        "Watermark in every admuse.decisions partition); 0: never (features then holds "
        "events of undelivered decisions by ADMUSE_FEATURES_MAX_HOLD_MS only).",
    )
    replica: int = Field(
        0, ge=0, description="This replica's number, 0..REPLICAS-1 (its decision watermark)."
    )
    replicas: int = Field(
        1, ge=1, description="How many inference replicas write decisions (all must state one)."
    )
    decision_ack: bool = Field(
        False,
        description="Answer Decide only after Kafka acknowledged its Decision record (no "
        "answered Decide without a record even on SIGKILL; costs a produce round trip).",
    )
    decision_ack_timeout_ms: int = Field(
        2000, ge=1, description="With decision_ack: longest wait for the record before a 503."
    )
    spool_dir: Path = Field(
        Path(".run/inference-spool"), description="Folder of the append-only decision spool."
    )
    metrics_require_key: bool = Field(
        False,
        description="Require an API key on /metrics (its labels list campaign ids and model "
        "versions; off: scrapers on the internal network reach it freely).",
    )
    # Rollback (services/inference/rollback.py)
    rollback: bool = Field(
        True, description="Roll back a new model whose creatives do significantly worse."
    )
    rollback_alpha: float = Field(
        0.05, gt=0.0, lt=0.5, description="False-alarm bound of the sequential rollback test."
    )
    rollback_rho: float = Field(
        10_000.0, gt=0.0, description="Mixture scale of the test (information units, 1/var)."
    )
    rollback_min_impressions: int = Field(
        100, ge=1, description="Impressions per side before the rollback test first looks."
    )
    rollback_horizon_impressions: int = Field(
        20_000, ge=1, description="New-model impressions after which the model is kept."
    )
    rollback_check_s: float = Field(5.0, gt=0.0, description="How often the test looks.")
    # Model trust (docs/contracts.md "Model artifacts")
    trusted_keys: str = Field(
        "",
        description="Ed25519 public keys (base64, comma-separated) whose signed models may "
        "serve; unsigned or otherwise signed models are refused.",
    )
    trusted_keys_file: Path | None = Field(
        None, description="File with more trusted public keys (base64 per line, or PEM)."
    )
    max_artifact_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest model artifact file that is read."
    )

    @field_validator("trusted_keys")
    @classmethod
    def _keys_parse(cls, v: str) -> str:
        TrustedKeys.parse(v)  # a malformed key is a start-up error, not a silent refusal
        return v

    def trusted_key_set(self) -> TrustedKeys:
        text = self.trusted_keys
        if self.trusted_keys_file is not None:
            try:
                text += "\n" + self.trusted_keys_file.read_text()
            except OSError as exc:
                raise ValueError(f"cannot read ADMUSE_INFERENCE_TRUSTED_KEYS_FILE: {exc}") from exc
        return TrustedKeys.parse(text)

    @model_validator(mode="after")
    def _replica_in_range(self) -> Settings:
        self.pseudonym_key()  # not empty: decisions carry the same pseudonyms as events
        if self.replica >= self.replicas:
            raise ValueError(
                f"ADMUSE_INFERENCE_REPLICA={self.replica} must be below "
                f"ADMUSE_INFERENCE_REPLICAS={self.replicas}"
            )
        return self

    @field_validator("api_keys")
    @classmethod
    def _some_key(cls, v: SecretStr) -> SecretStr:
        if not any(k.strip() for k in v.get_secret_value().split(",")):
            raise ValueError("ADMUSE_INFERENCE_API_KEYS holds no key; set at least one")
        return v

    def api_key_set(self) -> frozenset[str]:
        return frozenset(
            k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()
        )
