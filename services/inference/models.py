"""A campaign's model version, loaded and verified: generator + reward model (docs/contracts.md).

`ModelBundle.load` builds onnxruntime sessions from the artifact bytes, checks the metadata
and both graphs' input/output names, element types and shapes against the contract, and runs
one warm-up batch through both; anything off raises `ModelRejected` with a stable reason code,
so the caller keeps serving the old version. A loaded bundle is immutable and thread-safe:
swapping is replacing one reference.

Generation (`generate`) feeds standard-normal ``noise``, the segment one-hot and standard
Gumbel noise, all drawn from the caller's ``numpy.random.Generator`` (the graph has no random
ops), and decodes ``creative`` rows with the metadata encoding: categorical = argmax of its
one-hot block, numeric = ``min + x·(max−min)`` with x clipped to [0, 1], color = ``#rrggbb``
from three [0, 1] columns. `score` encodes attribute maps the same way for the reward model.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import onnxruntime as ort

__all__ = ["REJECT_REASONS", "Encoding", "ModelBundle", "ModelRejected", "choose_providers"]

REJECT_REASONS = (
    "bad_metadata",
    "invalid_onnx",
    "signature_mismatch",
    "warmup_failed",
)
_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_FLOAT = "tensor(float)"
# A 1-input Identity graph (float [N]), serialized once with onnx.helper; probes CUDA.
_PROBE = base64.b64decode(
    "CAg6PQoQCgF4EgF5IghJZGVudGl0eRIFcHJvYmVaEAoBeBILCgkIARIFCgMSAW5iEAoBeRILCgkIARIFCgMSAW5CBAoAEA0="
)


class ModelRejected(Exception):
    """A model version that must not serve; ``reason`` is one of `REJECT_REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@functools.cache
def choose_providers() -> list[str]:
    """``[CUDA, CPU]`` when a CUDA session really works here, else ``[CPU]``.

    onnxruntime's own logging is set to errors-only, and the CUDA probe runs at fatal-only,
    so a CPU machine (or a GPU build without usable CUDA libraries) says nothing.
    """
    ort.set_default_logger_severity(3)
    if _CUDA not in ort.get_available_providers():
        return [_CPU]
    ort.set_default_logger_severity(4)
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        session = ort.InferenceSession(_PROBE, opts, providers=[_CUDA])
        ok = session.get_providers()[:1] == [_CUDA]
        if ok:
            session.run(None, {"x": np.zeros(2, dtype=np.float32)})
    except Exception:
        ok = False
    finally:
        ort.set_default_logger_severity(3)
    return [_CUDA, _CPU] if ok else [_CPU]


@dataclass(frozen=True)
class _Block:
    name: str
    kind: str
    offset: int
    width: int
    values: tuple[str, ...] = ()
    lo: float = 0.0
    hi: float = 1.0


class Encoding:
    """The metadata ``encoding``: attribute maps ⇄ float32 rows of width ``creative_dim``."""

    def __init__(self, spec: Sequence[Mapping[str, Any]], creative_dim: int) -> None:
        blocks: list[_Block] = []
        offset = 0
        for raw in spec:
            block = _block(raw)
            if block.offset != offset:
                raise ModelRejected("bad_metadata", f"encoding {block.name!r} at {block.offset}")
            offset += block.width
            blocks.append(block)
        if offset != creative_dim:
            raise ModelRejected("bad_metadata", f"encoding width {offset} != {creative_dim}")
        if len({b.name for b in blocks}) != len(blocks):
            raise ModelRejected("bad_metadata", "duplicate attribute names in encoding")
        self.blocks = tuple(blocks)
        self.width = creative_dim
        self.gumbel_dim = sum(b.width for b in blocks if b.kind == "categorical")

    def decode(self, rows: np.ndarray) -> list[dict[str, str | float]]:
        """Rows of the encoded space → attribute maps (values as in Creative records)."""
        out: list[dict[str, str | float]] = [{} for _ in range(rows.shape[0])]
        for b in self.blocks:
            part = rows[:, b.offset : b.offset + b.width]
            if b.kind == "categorical":
                for row, i in zip(out, part.argmax(axis=1), strict=True):
                    row[b.name] = b.values[int(i)]
            elif b.kind == "numeric":
                vals = b.lo + np.clip(part[:, 0], 0.0, 1.0) * (b.hi - b.lo)
                for row, v in zip(out, vals, strict=True):
                    row[b.name] = round(float(v), 6)
            else:
                rgb = np.rint(np.clip(part, 0.0, 1.0) * 255).astype(int)
                for row, (r, g, bl) in zip(out, rgb, strict=True):
                    row[b.name] = f"#{r:02x}{g:02x}{bl:02x}"
        return out

    def encode(self, creatives: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Attribute maps (or Creative records) → float32 rows; unknown or missing values
        encode as zeros."""
        x = np.zeros((len(creatives), self.width), dtype=np.float32)
        for r, creative in enumerate(creatives):
            inner = creative.get("attributes")
            attrs = inner if isinstance(inner, Mapping) else creative
            for b in self.blocks:
                value = attrs.get(b.name)
                if b.kind == "categorical":
                    if isinstance(value, str) and value in b.values:
                        x[r, b.offset + b.values.index(value)] = 1.0
                elif b.kind == "numeric":
                    if (
                        isinstance(value, Real)
                        and not isinstance(value, bool)
                        and math.isfinite(float(value))
                    ):
                        x[r, b.offset] = np.clip((float(value) - b.lo) / (b.hi - b.lo), 0, 1)
                elif isinstance(value, str) and len(value) == 7 and value.startswith("#"):
                    try:
                        x[r, b.offset : b.offset + 3] = [
                            int(value[i : i + 2], 16) / 255.0 for i in (1, 3, 5)
                        ]
                    except ValueError:
                        pass
        return x


class ModelBundle:
    """One verified model version of a campaign. Build with `ModelBundle.load`."""

    def __init__(
        self,
        metadata: Mapping[str, Any],
        encoding: Encoding,
        generator: ort.InferenceSession,
        reward: ort.InferenceSession,
    ) -> None:
        self.metadata = dict(metadata)
        self.version = str(metadata["version"])
        self.campaign_id = str(metadata["campaign_id"])
        self.segments: list[str] = [str(s) for s in metadata["segments"]]
        self.encoding = encoding
        self.noise_dim = int(metadata["noise_dim"])
        self.providers = generator.get_providers()
        self._generator = generator
        self._reward = reward
        self._segment_index = {s: i for i, s in enumerate(self.segments)}

    @classmethod
    def load(
        cls,
        metadata: Mapping[str, Any],
        generator_onnx: bytes,
        reward_onnx: bytes,
        providers: list[str] | None = None,
        *,
        intra_op_threads: int = 1,
    ) -> ModelBundle:
        """Build, verify and warm up the sessions; raise `ModelRejected` on any mismatch."""
        dims = _check_metadata(metadata)
        encoding = Encoding(metadata["encoding"], dims["creative_dim"])
        if encoding.gumbel_dim != dims["gumbel_dim"]:
            raise ModelRejected(
                "bad_metadata",
                f"gumbel_dim {dims['gumbel_dim']} != {encoding.gumbel_dim} categorical columns",
            )
        available = ort.get_available_providers()
        wanted = providers if providers is not None else choose_providers()
        chosen = [p for p in wanted if p in available] or [_CPU]
        generator = _session("generator", generator_onnx, chosen, intra_op_threads)
        reward = _session("reward_model", reward_onnx, chosen, intra_op_threads)
        n_seg = len(metadata["segments"])
        _check_signature(
            "generator",
            generator,
            {
                "noise": dims["noise_dim"],
                "segment": n_seg,
                "gumbel": dims["gumbel_dim"],
            },
            {"creative": dims["creative_dim"]},
        )
        _check_signature(
            "reward_model",
            reward,
            {"segment": n_seg, "creative": dims["creative_dim"]},
            {"p_reward": 1},
        )
        bundle = cls(metadata, encoding, generator, reward)
        bundle._warm_up()
        return bundle

    def generate(
        self, segment: str, n: int, rng: np.random.Generator
    ) -> list[dict[str, str | float]]:
        """``n`` creatives for ``segment`` (attribute maps), all randomness from ``rng``."""
        if n <= 0:
            return []
        return self.encoding.decode(self._generate_rows(segment, n, rng))

    def score(self, segment: str, creatives: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Reward-model probabilities (float64, shape ``[len(creatives)]``) for attribute maps
        or Creative records.

        A segment the model has not seen gets the all-zero one-hot, as the contract says.
        """
        if not creatives:
            return np.zeros(0)
        x = self.encoding.encode(creatives)
        return self._score_rows(segment, x)

    def _segment_rows(self, segment: str, n: int) -> np.ndarray:
        seg = np.zeros((n, len(self.segments)), dtype=np.float32)
        i = self._segment_index.get(segment)
        if i is not None:
            seg[:, i] = 1.0
        return seg

    def _generate_rows(self, segment: str, n: int, rng: np.random.Generator) -> np.ndarray:
        feeds = {
            "noise": rng.standard_normal((n, self.noise_dim), dtype=np.float32),
            "segment": self._segment_rows(segment, n),
            "gumbel": rng.gumbel(size=(n, self.encoding.gumbel_dim)).astype(np.float32),
        }
        (rows,) = self._generator.run(["creative"], feeds)
        return np.asarray(rows)

    def _score_rows(self, segment: str, x: np.ndarray) -> np.ndarray:
        feeds = {"segment": self._segment_rows(segment, x.shape[0]), "creative": x}
        (p,) = self._reward.run(["p_reward"], feeds)
        return np.asarray(p, dtype=np.float64).reshape(-1)

    def _warm_up(self) -> None:
        n = max(len(self.segments), 2)
        rng = np.random.default_rng(0)
        try:
            rows = self._generate_rows(self.segments[0] if self.segments else "*", n, rng)
            if rows.shape != (n, self.encoding.width) or not np.isfinite(rows).all():
                raise ModelRejected("warmup_failed", f"generator gave {rows.shape} or non-finite")
            p = self._score_rows(self.segments[0] if self.segments else "*", rows)
            if p.shape != (n,) or not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
                raise ModelRejected("warmup_failed", "reward model gave values outside [0, 1]")
        except ModelRejected:
            raise
        except Exception as exc:
            raise ModelRejected("warmup_failed", f"{type(exc).__name__}: {exc}") from exc


def _check_metadata(metadata: Mapping[str, Any]) -> dict[str, int]:
    if not isinstance(metadata, Mapping):
        raise ModelRejected("bad_metadata", "metadata is not a JSON object")
    if metadata.get("format") != 1:
        raise ModelRejected("bad_metadata", f"format {metadata.get('format')!r}, expected 1")
    for key in ("campaign_id", "version"):
        if not isinstance(metadata.get(key), str) or not metadata[key]:
            raise ModelRejected("bad_metadata", f"{key} missing or not a string")
    segments = metadata.get("segments")
    if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
        raise ModelRejected("bad_metadata", "segments must be a list of strings")
    if not isinstance(metadata.get("encoding"), list):
        raise ModelRejected("bad_metadata", "encoding must be a list")
    dims = {}
    for key in ("noise_dim", "gumbel_dim", "creative_dim"):
        value = metadata.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ModelRejected("bad_metadata", f"{key} must be a non-negative integer")
        dims[key] = value
    if dims["creative_dim"] < 1:
        raise ModelRejected("bad_metadata", "creative_dim must be positive")
    return dims


def _block(raw: Mapping[str, Any]) -> _Block:
    try:
        name, kind = str(raw["name"]), str(raw["kind"])
        offset, width = int(raw["offset"]), int(raw["width"])
        if kind == "categorical":
            values = tuple(str(v) for v in raw["values"])
            if width != len(values) or width < 1:
                raise ValueError(f"width {width} != {len(values)} values")
            return _Block(name, kind, offset, width, values)
        if kind == "numeric":
            lo, hi = float(raw["min"]), float(raw["max"])
            if width != 1 or not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError("numeric needs width 1 and finite min < max")
            return _Block(name, kind, offset, width, lo=lo, hi=hi)
        if kind == "color":
            if width != 3:
                raise ValueError("color needs width 3")
            return _Block(name, kind, offset, width)
        raise ValueError(f"unknown kind {kind!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelRejected("bad_metadata", f"encoding entry {dict(raw)!r}: {exc}") from exc


def _session(role: str, data: bytes, providers: list[str], threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(data, opts, providers=providers)
    except Exception as exc:
        raise ModelRejected("invalid_onnx", f"{role}: {type(exc).__name__}: {exc}") from exc


def _check_signature(
    role: str, session: ort.InferenceSession, inputs: dict[str, int], outputs: dict[str, int]
) -> None:
    for kind, args, want in (
        ("input", session.get_inputs(), inputs),
        ("output", session.get_outputs(), outputs),
    ):
        got = {a.name: a for a in args}
        if set(got) != set(want):
            raise ModelRejected(
                "signature_mismatch", f"{role} {kind}s {sorted(got)}, expected {sorted(want)}"
            )
        for name, width in want.items():
            arg = got[name]
            if arg.type != _FLOAT:
                raise ModelRejected("signature_mismatch", f"{role} {name} is {arg.type}")
            shape = list(arg.shape)
            # The batch dimension must be dynamic (a name or None); a symbolic width is
            # accepted here and checked by the warm-up batch.
            if (
                len(shape) != 2
                or isinstance(shape[0], int)
                or (isinstance(shape[1], int) and shape[1] != width)
            ):
                raise ModelRejected(
                    "signature_mismatch", f"{role} {name} has shape {shape}, expected [B, {width}]"
                )
