"""The networks: a conditional generator, a packed (PacGAN) critic and a reward model.

No BatchNorm or dropout anywhere, so a module computes the same function in train and eval
mode and the exported graph is the trained one. The generator's exported `forward` takes its
Gumbel noise as an input (categorical blocks become one-hot `argmax(logits + gumbel)`), so the
ONNX graph holds no random op; training uses `sample` (Gumbel-softmax, differentiable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Discriminator", "Generator", "ModelConfig", "RewardModel"]


@dataclass(frozen=True)
class ModelConfig:
    """Network sizes. `pac` is how many samples the critic judges together (PacGAN)."""

    noise_dim: int = 32
    hidden: int = 128
    layers: int = 2
    critic_hidden: int = 128
    pac: int = 4
    reward_hidden: int = 64
    # Radial basis bumps per numeric/color column in the reward model (0: those columns enter
    # linearly, so each segment's response to them is monotone)
    reward_bends: int = 4

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _mlp(inputs: int, hidden: int, layers: int, *, norm: bool, slope: float) -> nn.Sequential:
    mods: list[nn.Module] = []
    width = inputs
    for _ in range(layers):
        mods.append(nn.Linear(width, hidden))
        if norm:
            mods.append(nn.LayerNorm(hidden))
        mods.append(nn.LeakyReLU(slope))
        width = hidden
    return nn.Sequential(*mods)


class Generator(nn.Module):
    """G(noise, segment) → creative in the encoded space.

    `blocks` lists (kind, offset, width) in encoding order (`CreativeSpace.blocks()`); kind
    is 'categorical' (softmax block), 'circular' (two columns: a point on the circle of radius
    0.5 around (0.5, 0.5), so the range's ends meet) or anything else (sigmoid columns in
    [0, 1]).
    """

    def __init__(
        self, blocks: Sequence[tuple[str, int, int]], n_segments: int, cfg: ModelConfig
    ) -> None:
        super().__init__()
        self.blocks = [(str(k), int(o), int(w)) for k, o, w in blocks]
        self.noise_dim = cfg.noise_dim
        self.n_segments = n_segments
        self.creative_dim = sum(w for _, _, w in self.blocks)
        self.gumbel_dim = sum(w for k, _, w in self.blocks if k == "categorical")
        self.body = _mlp(cfg.noise_dim + n_segments, cfg.hidden, cfg.layers, norm=True, slope=0.2)
        self.head = nn.Linear(cfg.hidden, self.creative_dim)

    def logits(self, noise: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(torch.cat([noise, segment], dim=1)))

    def sample(
        self, noise: torch.Tensor, segment: torch.Tensor, tau: float, hard: bool = False
    ) -> torch.Tensor:
        """Training output: Gumbel-softmax (temperature `tau`) blocks, sigmoid numerics;
        `hard` gives one-hot blocks forward with the soft gradient (straight-through)."""
        raw = self.logits(noise, segment)
        parts = []
        for kind, off, width in self.blocks:
            block = raw[:, off : off + width]
            if kind == "categorical":
                parts.append(F.gumbel_softmax(block, tau=tau, hard=hard, dim=1))
            else:
                parts.append(_continuous(kind, block))
        return torch.cat(parts, dim=1)

    def forward(
        self, noise: torch.Tensor, segment: torch.Tensor, gumbel: torch.Tensor
    ) -> torch.Tensor:
        """Serving output: one-hot `argmax(logits + gumbel)` blocks, sigmoid numerics."""
        raw = self.logits(noise, segment)
        parts = []
        g = 0
        for kind, off, width in self.blocks:
            block = raw[:, off : off + width]
            if kind == "categorical":
                z = block + gumbel[:, g : g + width]
                g += width
                idx = torch.argmax(z, dim=1, keepdim=True)
                ar = torch.arange(width, device=z.device).unsqueeze(0)
                parts.append((ar == idx).to(raw.dtype))
            else:
                parts.append(_continuous(kind, block))
        return torch.cat(parts, dim=1)

    def choice_margin(
        self, noise: torch.Tensor, segment: torch.Tensor, gumbel: torch.Tensor
    ) -> torch.Tensor:
        """Per row, the smallest gap between the two best scores of any categorical block.

        Rows with a near-tie may round either way in another runtime; parity checks skip them.
        """
        raw = self.logits(noise, segment)
        margin = torch.full((raw.shape[0],), float("inf"), device=raw.device)
        g = 0
        for kind, off, width in self.blocks:
            if kind != "categorical" or width < 2:
                g += width if kind == "categorical" else 0
                continue
            z = raw[:, off : off + width] + gumbel[:, g : g + width]
            g += width
            top = torch.topk(z, 2, dim=1).values
            margin = torch.minimum(margin, top[:, 0] - top[:, 1])
        return margin


def _continuous(kind: str, block: torch.Tensor) -> torch.Tensor:
    """Sigmoid columns, or for 'circular' the block's direction as a point on the circle
    (0.5 + 0.5 cos, 0.5 + 0.5 sin): only the angle is learned, so no seam at the range's end."""
    if kind != "circular":
        return torch.sigmoid(block)
    norm = torch.sqrt((block * block).sum(dim=1, keepdim=True) + 1e-6)
    return 0.5 + 0.5 * block / norm


class Discriminator(nn.Module):
    """Wasserstein critic on packs of `pac` (creative, segment) rows (no normalization layer,
    as the gradient penalty requires)."""

    def __init__(self, creative_dim: int, n_segments: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.pac = cfg.pac
        self.width = creative_dim + n_segments
        self.body = _mlp(self.width * cfg.pac, cfg.critic_hidden, cfg.layers, norm=False, slope=0.2)
        self.head = nn.Linear(cfg.critic_hidden, 1)

    def forward(self, creative: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
        x = torch.cat([creative, segment], dim=1)
        return self.head(self.body(x.reshape(-1, self.width * self.pac)))


class RewardModel(nn.Module):
    """P(reward | segment, creative), wide and deep: a linear term over segment × features
    (each segment's own taste per attribute value) plus an MLP for everything else.

    Features are the creative's columns plus, for each `continuous` column (numeric, color
    channel; values in [0, 1]), `cfg.reward_bends` Gaussian bumps centred evenly on [0, 1]:
    the wide term then holds a smooth curve per segment and column, so an effect that peaks
    mid-range (a font size, a hue) is as easy to fit as a monotone one. `forward` returns the
    probability [B, 1].
    """

    def __init__(
        self,
        creative_dim: int,
        n_segments: int,
        cfg: ModelConfig,
        continuous: Sequence[int] = (),
    ) -> None:
        super().__init__()
        bends = cfg.reward_bends if len(continuous) else 0
        self.bends = bends
        self.register_buffer("continuous", torch.tensor(list(continuous), dtype=torch.long))
        self.register_buffer("centres", torch.linspace(0.0, 1.0, max(bends, 2))[:bends])
        self.inv_width = float(max(bends - 1, 1))  # bump width = spacing of the centres
        features = creative_dim + len(continuous) * bends
        self.body = _mlp(features + n_segments, cfg.reward_hidden, 2, norm=False, slope=0.01)
        self.head = nn.Linear(cfg.reward_hidden, 1)
        self.wide = nn.Linear(n_segments * features + features, 1, bias=False)
        nn.init.zeros_(self.wide.weight)

    def features(self, creative: torch.Tensor) -> torch.Tensor:
        if not self.bends:
            return creative
        x = creative.index_select(1, self.continuous).unsqueeze(2)
        bumps = torch.exp(-(((x - self.centres) * self.inv_width) ** 2))
        return torch.cat([creative, bumps.flatten(1)], dim=1)

    def logit(self, segment: torch.Tensor, creative: torch.Tensor) -> torch.Tensor:
        f = self.features(creative)
        cross = torch.matmul(segment.unsqueeze(2), f.unsqueeze(1))
        wide = torch.cat([cross.flatten(1), f], dim=1)
        deep = self.head(self.body(torch.cat([segment, f], dim=1)))
        return deep + self.wide(wide)

    def forward(self, segment: torch.Tensor, creative: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(segment, creative))
