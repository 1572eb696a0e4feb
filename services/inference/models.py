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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from services.common.creative_space import CreativeSpace, EncodingError

__all__ = ["REJECT_REASONS", "ModelBundle", "ModelRejected", "choose_providers", "load_encoding"]

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


def load_encoding(spec: Sequence[Mapping[str, Any]], creative_dim: int) -> CreativeSpace:
    """The metadata ``encoding`` as the shared `CreativeSpace`; off-contract → `ModelRejected`."""
    try:
        space = CreativeSpace.from_json(spec)
    except EncodingError as exc:
        raise ModelRejected("bad_metadata", str(exc)) from exc
    if space.creative_dim != creative_dim:
        raise ModelRejected(
            "bad_metadata", f"encoding width {space.creative_dim} != {creative_dim}"
        )
    return space


class ModelBundle:
    """One verified model version of a campaign. Build with `ModelBundle.load`."""

    def __init__(
        self,
        metadata: Mapping[str, Any],
        encoding: CreativeSpace,
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
        encoding = load_encoding(metadata["encoding"], dims["creative_dim"])
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
        return self.encoding.decode_many(self._generate_rows(segment, n, rng), digits=6)

    def score(self, segment: str, creatives: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Reward-model probabilities (float64, shape ``[len(creatives)]``) for attribute maps
        or Creative records.

        A segment the model has not seen gets the all-zero one-hot, as the contract says.
        """
        if not creatives:
            return np.zeros(0)
        x = self.encoding.encode_lenient(creatives)
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
            if rows.shape != (n, self.encoding.creative_dim) or not np.isfinite(rows).all():
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
