"""The training loop: a calibrated reward model, then a conditional WGAN-GP generator.

Data: rows of (segment, creative vector, reward, propensity). The reward model learns
P(reward | segment, creative) on 80 % and reports AUC, log-loss and expected calibration error
on the held-out 20 %. The GAN learns p(creative | segment, rewarded): real samples are
rewarded decisions drawn with weight reward / propensity (inverse propensity), so under any
logging policy they follow what uniform exploration would have rewarded. Conditioning uses
training-by-sampling (a segment first, uniformly over segments with rewards, then a row of it),
so small segments are learned as well as big ones. The generator also climbs the frozen reward
model's log-probability, held back by the critic.
Categorical outputs are Gumbel-softmax samples, one-hot in the forward pass with the soft
gradient (straight-through), so the critic cannot tell fakes by their softness.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from services.common.creative_space import CreativeSpace
from services.trainer.model import Discriminator, Generator, ModelConfig, RewardModel
from services.trainer.quality import auc, expected_calibration_error, log_loss

__all__ = [
    "Progress",
    "SingleClassError",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "TrainingError",
    "pick_device",
    "train",
]

Progress = Callable[[str, int, int], None]  # (phase, done, total)


class TrainingError(ValueError):
    """Not enough (or unusable) data to train; the message says what is missing."""

    reason = "not_enough_data"


class SingleClassError(TrainingError):
    """Every reward has the same label: nothing to tell apart, so nothing to train."""

    reason = "single_class"


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings. `small()` is a test-size run (seconds on a busy CPU)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    gan_steps: int = 600
    critic_steps: int = 2
    batch_size: int = 256  # a multiple of model.pac
    lr: float = 2e-4
    gp_weight: float = 10.0
    tau: float = 0.2
    straight_through: bool = True  # hard one-hot forward, Gumbel-softmax gradient
    reward_weight: float = 1.0
    reward_epochs: int = 20
    reward_batch: int = 512
    reward_lr: float = 3e-3
    holdout: float = 0.2
    max_reward_steps: int = 2000
    threads: int = 1  # torch CPU threads; one is fastest for these small networks

    @classmethod
    def small(cls) -> TrainConfig:
        return cls(
            model=ModelConfig(noise_dim=16, hidden=64, critic_hidden=64, reward_hidden=32),
            gan_steps=400,
            critic_steps=1,
            batch_size=128,
            lr=1e-3,
            reward_epochs=40,
            reward_batch=256,
            max_reward_steps=1500,
        )

    def with_overrides(self, **kw: Any) -> TrainConfig:
        """This config with every given (not None) field replaced; `reward_bends` and the
        other `ModelConfig` fields go to `model`."""
        given = {k: v for k, v in kw.items() if v is not None}
        model_fields = set(asdict(self.model))
        model_kw = {k: given.pop(k) for k in list(given) if k in model_fields}
        return replace(self, model=replace(self.model, **model_kw), **given)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingData:
    """Encoded rows: `segment` indexes `segments`; `catalog` holds catalog creatives."""

    space: CreativeSpace
    segments: list[str]
    x: np.ndarray  # [N, creative_dim] float32
    segment: np.ndarray  # [N] int
    reward: np.ndarray  # [N] float
    propensity: np.ndarray  # [N] float in (0, 1]
    catalog: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    window_ms: tuple[int, int] | None = None  # decided_at of the oldest and newest row

    def __post_init__(self) -> None:
        n = len(self.x)
        if not (len(self.segment) == len(self.reward) == len(self.propensity) == n):
            raise TrainingError("training arrays differ in length")

    @property
    def label(self) -> np.ndarray:
        """Reward as a probability target: clicks are 0/1; weighted rewards are clipped."""
        return np.clip(self.reward, 0.0, 1.0).astype(np.float32)

    def onehot(self, idx: np.ndarray | None = None) -> np.ndarray:
        seg = self.segment if idx is None else self.segment[idx]
        out = np.zeros((len(seg), len(self.segments)), np.float32)
        out[np.arange(len(seg)), seg] = 1.0
        return out


@dataclass
class TrainResult:
    generator: Generator
    reward_model: RewardModel
    metrics: dict[str, float]
    config: TrainConfig
    device: str


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when asked for or available (auto), else CPU."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainingError("ADMUSE_TRAINER_DEVICE=cuda but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


@contextlib.contextmanager
def _seeded(seed: int, threads: int) -> Iterator[None]:
    was, was_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)
        torch.set_num_threads(was_threads)


def train(
    data: TrainingData,
    cfg: TrainConfig,
    *,
    seed: int = 7,
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train the reward model, then the generator; return both on CPU in eval mode."""
    device = device or torch.device("cpu")
    if len(data.x) < 20:
        raise TrainingError(f"only {len(data.x)} usable rewards; need at least 20 to train")
    if not (data.reward > 0).any():
        raise TrainingError("no decision in the window earned a reward; nothing to learn from")
    if (data.label > 0.5).all() or (data.label <= 0.5).all():
        raise SingleClassError(
            f"all {len(data.x)} rewards have the same label ({float(data.label[0]):g}); a "
            "reward model cannot learn from one class (a replayed click-only log or a "
            "misconfigured reward?) — not training"
        )
    if cfg.batch_size % cfg.model.pac:
        raise TrainingError(f"batch_size {cfg.batch_size} is not a multiple of pac {cfg.model.pac}")
    with _seeded(seed, cfg.threads):
        rng = np.random.default_rng(seed)
        reward_model, metrics = _fit_reward_model(data, cfg, rng, device, progress)
        generator, gan_metrics = _fit_gan(data, cfg, reward_model, rng, device, progress)
    metrics.update(gan_metrics)
    return TrainResult(generator.cpu().eval(), reward_model.cpu().eval(), metrics, cfg, str(device))


def _fit_reward_model(
    data: TrainingData,
    cfg: TrainConfig,
    rng: np.random.Generator,
    device: torch.device,
    progress: Progress | None,
) -> tuple[RewardModel, dict[str, float]]:
    n = len(data.x)
    order = rng.permutation(n)
    n_hold = max(1, int(n * cfg.holdout))
    hold, fit = order[:n_hold], order[n_hold:]
    seg = torch.from_numpy(data.onehot()).to(device)
    x = torch.from_numpy(data.x).to(device)
    y = torch.from_numpy(data.label).to(device).unsqueeze(1)
    continuous = [
        c.offset + i for c in data.space.columns if c.kind != "categorical" for i in range(c.width)
    ]
    model = RewardModel(data.space.creative_dim, len(data.segments), cfg.model, continuous).to(
        device
    )
    opt = torch.optim.Adam(model.parameters(), lr=cfg.reward_lr, weight_decay=1e-5)
    per_epoch = max(1, int(np.ceil(len(fit) / cfg.reward_batch)))
    total = min(cfg.max_reward_steps, cfg.reward_epochs * per_epoch)
    step = 0
    while step < total:
        perm = torch.from_numpy(rng.permutation(fit)).to(device)
        for start in range(0, len(perm), cfg.reward_batch):
            idx = perm[start : start + cfg.reward_batch]
            loss = F.binary_cross_entropy_with_logits(model.logit(seg[idx], x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if progress:
                progress("reward model", step, total)
            if step >= total:
                break
    model.eval()
    with torch.no_grad():
        h = torch.from_numpy(hold).to(device)
        p = model(seg[h], x[h]).squeeze(1).cpu().numpy().astype(np.float64)
    truth = data.label[hold]
    base_rate = float(np.clip(data.label[fit].mean(), 1e-6, 1 - 1e-6))
    metrics = {
        "reward_logloss": log_loss(truth, p),
        "reward_base_logloss": log_loss(truth, np.full(len(truth), base_rate)),
        "reward_ece": expected_calibration_error(truth, p),
        "reward_auc": auc((truth > 0.5).astype(np.float64), p),
        "reward_base_rate": float(truth.mean()),
        "reward_holdout_rows": float(len(hold)),
    }
    return model, metrics


class _SegmentSampler:
    """Training-by-sampling: a segment uniformly among those with rewards, then one of its
    rewarded rows with probability ∝ reward / propensity."""

    def __init__(self, data: TrainingData, rng: np.random.Generator) -> None:
        self.rng = rng
        pos = np.flatnonzero(data.reward > 0)
        weight = data.reward[pos] / np.clip(data.propensity[pos], 1e-6, None)
        self.segments = np.unique(data.segment[pos])
        self.rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for s in self.segments:
            mask = data.segment[pos] == s
            w = weight[mask]
            self.rows[int(s)] = (pos[mask], w / w.sum())

    def draw(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        segs = self.rng.choice(self.segments, size=batch)
        rows = np.empty(batch, dtype=np.int64)
        for s in np.unique(segs):
            where = np.flatnonzero(segs == s)
            idx, p = self.rows[int(s)]
            rows[where] = self.rng.choice(idx, size=len(where), p=p)
        return segs, rows


def _fit_gan(
    data: TrainingData,
    cfg: TrainConfig,
    reward_model: RewardModel,
    rng: np.random.Generator,
    device: torch.device,
    progress: Progress | None,
) -> tuple[Generator, dict[str, float]]:
    space, n_seg, mc = data.space, len(data.segments), cfg.model
    blocks = [(c.kind, c.offset, c.width) for c in space.columns]
    gen = Generator(blocks, n_seg, mc).to(device)
    critic = Discriminator(space.creative_dim, n_seg, mc).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    for p in reward_model.parameters():
        p.requires_grad_(False)
    sampler = _SegmentSampler(data, rng)
    x_all = torch.from_numpy(data.x).to(device)
    eye = torch.eye(n_seg, device=device)
    b = cfg.batch_size
    w_dist = g_reward = 0.0
    for step in range(1, cfg.gan_steps + 1):
        for _ in range(cfg.critic_steps):
            segs, rows = sampler.draw(b)
            cond = eye[torch.from_numpy(segs).to(device)]
            real = x_all[torch.from_numpy(rows).to(device)]
            with torch.no_grad():
                fake = gen.sample(
                    torch.randn(b, mc.noise_dim, device=device),
                    cond,
                    cfg.tau,
                    hard=cfg.straight_through,
                )
            d_real, d_fake = critic(real, cond).mean(), critic(fake, cond).mean()
            gp = _gradient_penalty(critic, real, fake, cond, mc.pac)
            loss_d = d_fake - d_real + cfg.gp_weight * gp
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        segs, _ = sampler.draw(b)
        cond = eye[torch.from_numpy(segs).to(device)]
        fake = gen.sample(
            torch.randn(b, mc.noise_dim, device=device), cond, cfg.tau, hard=cfg.straight_through
        )
        log_p = F.logsigmoid(reward_model.logit(cond, fake)).mean()
        loss_g = -critic(fake, cond).mean() - cfg.reward_weight * log_p
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        w_dist, g_reward = float((d_real - d_fake).detach()), float(log_p.detach().exp())
        if progress:
            progress("generator", step, cfg.gan_steps)
    return gen, {"gan_wasserstein": w_dist, "gan_train_reward": g_reward}


def _gradient_penalty(
    critic: Discriminator, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor, pac: int
) -> torch.Tensor:
    """WGAN-GP on interpolates; one mixing weight per pack so a pack stays one sample."""
    alpha = torch.rand(real.shape[0] // pac, 1, 1, device=real.device)
    alpha = alpha.expand(-1, pac, 1).reshape(-1, 1)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = critic(mixed, cond)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    norms = grad.reshape(-1, pac * real.shape[1]).norm(2, dim=1)
    return ((norms - 1.0) ** 2).mean()
