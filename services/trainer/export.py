"""ONNX export of the generator and reward model, checked against torch before publishing.

Uses the TorchScript exporter (`dynamo=False`): for these small MLPs it writes the same graph
as the torch.export-based exporter in ~0.1 s instead of 3-9 s, with no console chatter; the
dynamo exporter is the fallback where the TorchScript one is unavailable. Opset 18, batch
dimension dynamic. `check_*_parity` runs onnxruntime against torch on random inputs and raises
`ExportError` (refuse to publish) when the outputs differ by more than `tolerance`, or when the
graph's inputs/outputs do not match the contract in docs/contracts.md.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from services.trainer.model import Generator, RewardModel

__all__ = [
    "OPSET",
    "ExportError",
    "ExportedModels",
    "check_generator_parity",
    "check_reward_parity",
    "export_and_check",
    "export_generator",
    "export_reward_model",
    "onnx_session",
]

OPSET = 18
TOLERANCE = 1e-4
_TIE = 1e-3  # categorical choices closer than this may round either way: not compared


class ExportError(RuntimeError):
    """The exported graph is unusable or disagrees with torch; the model is not published."""


@dataclass(frozen=True)
class ExportedModels:
    generator: bytes
    reward_model: bytes
    generator_max_diff: float
    reward_max_diff: float


def _export(
    module: torch.nn.Module, args: tuple[torch.Tensor, ...], inputs: list[str], output: str
) -> bytes:
    module = copy.deepcopy(module).cpu().eval()
    names = [*inputs, output]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        try:
            torch.onnx.export(
                module,
                args,
                buf,
                input_names=inputs,
                output_names=[output],
                opset_version=OPSET,
                dynamo=False,
                dynamic_axes={n: {0: "batch"} for n in names},
            )
            return buf.getvalue()
        except (RuntimeError, TypeError, ValueError):
            batch = torch.export.Dim("batch")
            program = torch.onnx.export(
                module,
                args,
                input_names=inputs,
                output_names=[output],
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
                dynamic_shapes={n: {0: batch} for n in inputs},
            )
            return program.model_proto.SerializeToString()


def export_generator(gen: Generator) -> bytes:
    args = (
        torch.zeros(2, gen.noise_dim),
        torch.zeros(2, gen.n_segments),
        torch.zeros(2, gen.gumbel_dim),
    )
    return _export(gen, args, ["noise", "segment", "gumbel"], "creative")


def export_reward_model(rm: RewardModel, n_segments: int, creative_dim: int) -> bytes:
    args = (torch.zeros(2, n_segments), torch.zeros(2, creative_dim))
    return _export(rm, args, ["segment", "creative"], "p_reward")


def onnx_session(data: bytes):  # -> onnxruntime.InferenceSession
    """A CPU onnxruntime session; unreadable bytes raise ExportError."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        raise ExportError(f"onnxruntime cannot load the exported graph: {exc}") from exc


def _check_io(session, inputs: dict[str, int], output: tuple[str, int]) -> None:
    got = {i.name: i.shape for i in session.get_inputs()}
    want_names = list(inputs)
    if list(got) != want_names:
        raise ExportError(f"graph inputs are {list(got)}, the contract says {want_names}")
    for name, width in inputs.items():
        if got[name][1] != width or isinstance(got[name][0], int):
            raise ExportError(f"input {name} has shape {got[name]}, expected [batch, {width}]")
    outs = session.get_outputs()
    if len(outs) != 1 or outs[0].name != output[0] or outs[0].shape[1] != output[1]:
        raise ExportError(
            f"graph outputs are {[(o.name, o.shape) for o in outs]}, "
            f"expected {output[0]} [batch, {output[1]}]"
        )


def _random_segments(rng: np.random.Generator, rows: int, n_seg: int) -> np.ndarray:
    seg = np.zeros((rows, n_seg), np.float32)
    pick = rng.integers(0, n_seg + 1, rows)  # n_seg: an unseen segment (all zeros)
    known = pick < n_seg
    seg[np.flatnonzero(known), pick[known]] = 1.0
    return seg


def check_generator_parity(
    gen: Generator,
    onnx_bytes: bytes,
    *,
    rows: int = 512,
    seed: int = 0,
    tolerance: float = TOLERANCE,
) -> float:
    """Max |onnx − torch| over random inputs; ExportError when above `tolerance`."""
    session = onnx_session(onnx_bytes)
    _check_io(
        session,
        {"noise": gen.noise_dim, "segment": gen.n_segments, "gumbel": gen.gumbel_dim},
        ("creative", gen.creative_dim),
    )
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((rows, gen.noise_dim)).astype(np.float32)
    seg = _random_segments(rng, rows, gen.n_segments)
    u = rng.uniform(1e-9, 1.0, (rows, gen.gumbel_dim))
    gumbel = (-np.log(-np.log(u))).astype(np.float32)
    feeds = {"noise": noise, "segment": seg, "gumbel": gumbel}
    got = session.run(None, feeds)[0]
    module = copy.deepcopy(gen).cpu().eval()
    with torch.no_grad():
        args = [torch.from_numpy(a) for a in (noise, seg, gumbel)]
        want = module(*args).numpy()
        clear = module.choice_margin(*args).numpy() > _TIE
    if clear.sum() < rows // 2:
        raise ExportError("too many near-tied categorical choices to compare; check the model")
    if got.shape != want.shape:
        raise ExportError(f"onnx output shape {got.shape} differs from torch {want.shape}")
    diff = float(np.max(np.abs(got[clear] - want[clear])))
    if not diff <= tolerance:
        raise ExportError(
            f"generator: onnx and torch differ by {diff:.3g} (> {tolerance}); refusing to publish"
        )
    return diff


def check_reward_parity(
    rm: RewardModel,
    onnx_bytes: bytes,
    n_segments: int,
    creative_dim: int,
    *,
    rows: int = 512,
    seed: int = 0,
    tolerance: float = TOLERANCE,
) -> float:
    session = onnx_session(onnx_bytes)
    _check_io(session, {"segment": n_segments, "creative": creative_dim}, ("p_reward", 1))
    rng = np.random.default_rng(seed)
    seg = _random_segments(rng, rows, n_segments)
    creative = rng.uniform(0, 1, (rows, creative_dim)).astype(np.float32)
    got = session.run(None, {"segment": seg, "creative": creative})[0]
    module = copy.deepcopy(rm).cpu().eval()
    with torch.no_grad():
        want = module(torch.from_numpy(seg), torch.from_numpy(creative)).numpy()
    if got.shape != want.shape:
        raise ExportError(f"onnx output shape {got.shape} differs from torch {want.shape}")
    diff = float(np.max(np.abs(got - want)))
    if not diff <= tolerance:
        raise ExportError(
            f"reward model: onnx and torch differ by {diff:.3g} (> {tolerance}); "
            "refusing to publish"
        )
    return diff


def export_and_check(gen: Generator, rm: RewardModel, *, seed: int = 0) -> ExportedModels:
    """Export both models and verify them; raises ExportError instead of returning bad bytes."""
    g = export_generator(gen)
    r = export_reward_model(rm, gen.n_segments, gen.creative_dim)
    return ExportedModels(
        generator=g,
        reward_model=r,
        generator_max_diff=check_generator_parity(gen, g, seed=seed),
        reward_max_diff=check_reward_parity(rm, r, gen.n_segments, gen.creative_dim, seed=seed),
    )
