"""Tiny contract-following ONNX models (docs/contracts.md) built with onnx.helper, so the
inference tests need no trainer: a linear generator with Gumbel-argmax one-hot blocks and a
logistic reward model whose weights the tests choose."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ENCODING: list[dict[str, Any]] = [
    {"name": "headline", "kind": "categorical", "offset": 0, "width": 4,
     "values": ["Spring sale", "New in", "Last chance", "Just for you"]},
    {"name": "cta", "kind": "categorical", "offset": 4, "width": 3,
     "values": ["Buy now", "Shop", "Learn more"]},
    {"name": "font_scale", "kind": "numeric", "offset": 7, "width": 1, "min": 0.8, "max": 1.6},
    {"name": "background", "kind": "color", "offset": 8, "width": 3},
    {"name": "text_color", "kind": "color", "offset": 11, "width": 3},
]  # fmt: skip
CREATIVE_DIM = 14
GUMBEL_DIM = 7
NOISE_DIM = 6
SEGMENTS = ["country=DE|device=mobile", "country=FR|device=desktop"]


def metadata(version: str = "v1", **overrides: Any) -> dict[str, Any]:
    """Metadata JSON for the models below (a deep copy; override any key)."""
    meta: dict[str, Any] = {
        "format": 1,
        "campaign_id": "spring",
        "version": version,
        "segments": list(SEGMENTS),
        "noise_dim": NOISE_DIM,
        "gumbel_dim": GUMBEL_DIM,
        "creative_dim": CREATIVE_DIM,
        "encoding": copy.deepcopy(ENCODING),
        "metrics": {"reward_logloss": 0.4},
        "quality": {"passed": True, "reasons": [], "thresholds": {}},
        "seed": 7,
        "training_rows": 100,
        "versions": {"opset": 17},
    }
    meta.update(overrides)
    return meta


def campaign(**overrides: Any) -> dict[str, Any]:
    """A decoded Campaign record whose attribute space matches `ENCODING`."""
    attrs = [
        {"name": e["name"], "kind": e["kind"], "values": e.get("values", []),
         "min": e.get("min"), "max": e.get("max")}
        for e in ENCODING
    ]  # fmt: skip
    record: dict[str, Any] = {
        "campaign_id": "spring",
        "name": "Spring",
        "revision": 1,
        "attributes": attrs,
        "segment_keys": ["country", "device"],
        "reward": {"kind": "click"},
        "attribution_window_ms": 60_000,
        "holdout_share": 0.1,
        "forbidden": [],
        "min_contrast": 4.5,
        "allow_retire_catalog": False,
        "max_generated": 4,
        "updated_at": 0,
    }
    record.update(overrides)
    return record


def _const(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(array, name)


def _model(nodes: list, inputs: list, outputs: list, inits: list, opset: int = 17) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _io(name: str, width: int | str, batch: int | str = "B") -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, width])


def generator(
    seed: int = 0,
    *,
    names: tuple[str, str, str] = ("noise", "segment", "gumbel"),
    out_name: str = "creative",
    out_width: int = CREATIVE_DIM,
    noise_dim: int = NOISE_DIM,
    batch: int | str = "B",
    bias: np.ndarray | None = None,
) -> bytes:
    """Linear generator: logits = [noise, segment] @ W + bias; categorical blocks are
    one-hot(argmax(logits + gumbel)), numeric and color columns sigmoid(logits)."""
    rng = np.random.default_rng(seed)
    n_in = noise_dim + len(SEGMENTS)
    w = rng.normal(0, 1.0, (n_in, CREATIVE_DIM)).astype(np.float32)
    b = (bias if bias is not None else rng.normal(0, 0.5, CREATIVE_DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Concat", [names[0], names[1]], ["h"], axis=1),
        helper.make_node("MatMul", ["h", "W"], ["hw"]),
        helper.make_node("Add", ["hw", "b"], ["logits"]),
    ]
    inits = [_const("W", w), _const("b", b)]
    parts, g_off = [], 0
    for i, e in enumerate(ENCODING):
        lo, hi = e["offset"], e["offset"] + e["width"]
        inits += [
            _const(f"s{i}", np.array([lo], np.int64)),
            _const(f"e{i}", np.array([hi], np.int64)),
        ]
        inits.append(_const(f"ax{i}", np.array([1], np.int64)))
        nodes.append(helper.make_node("Slice", ["logits", f"s{i}", f"e{i}", f"ax{i}"], [f"l{i}"]))
        if e["kind"] == "categorical":
            gs, ge = g_off, g_off + e["width"]
            g_off = ge
            inits += [
                _const(f"gs{i}", np.array([gs], np.int64)),
                _const(f"ge{i}", np.array([ge], np.int64)),
            ]
            nodes += [
                helper.make_node("Slice", [names[2], f"gs{i}", f"ge{i}", f"ax{i}"], [f"g{i}"]),
                helper.make_node("Add", [f"l{i}", f"g{i}"], [f"z{i}"]),
                helper.make_node("ReduceMax", [f"z{i}"], [f"m{i}"], axes=[1], keepdims=1),
                helper.make_node("Equal", [f"z{i}", f"m{i}"], [f"q{i}"]),
                helper.make_node("Cast", [f"q{i}"], [f"o{i}"], to=TensorProto.FLOAT),
            ]
        else:
            nodes.append(helper.make_node("Sigmoid", [f"l{i}"], [f"o{i}"]))
        parts.append(f"o{i}")
    nodes.append(helper.make_node("Concat", parts, ["full"], axis=1))
    inits += [_const("zs", np.array([0], np.int64)), _const("ze", np.array([out_width], np.int64)),
              _const("za", np.array([1], np.int64))]  # fmt: skip
    nodes.append(helper.make_node("Slice", ["full", "zs", "ze", "za"], [out_name]))
    inputs = [_io(names[0], noise_dim, batch), _io(names[1], len(SEGMENTS), batch),
              _io(names[2], GUMBEL_DIM, batch)]  # fmt: skip
    return _model(nodes, inputs, [_io(out_name, out_width, batch)], inits)


def reward_weights(favourite_headline: str = "Last chance") -> np.ndarray:
    """Weights over [segment, creative] that strongly favour one headline."""
    w = np.full(len(SEGMENTS) + CREATIVE_DIM, -0.2, dtype=np.float32)
    idx = ENCODING[0]["values"].index(favourite_headline)
    w[len(SEGMENTS) + idx] = 3.0
    return w


def reward_model(
    weights: np.ndarray | None = None,
    bias: float = -2.0,
    *,
    out_name: str = "p_reward",
    out_width: int = 1,
) -> bytes:
    """p_reward = sigmoid([segment, creative] @ w + bias)."""
    w = reward_weights() if weights is None else weights.astype(np.float32)
    w2 = np.repeat(w.reshape(-1, 1), out_width, axis=1)
    nodes = [
        helper.make_node("Concat", ["segment", "creative"], ["h"], axis=1),
        helper.make_node("MatMul", ["h", "W"], ["hw"]),
        helper.make_node("Add", ["hw", "b"], ["z"]),
        helper.make_node("Sigmoid", ["z"], [out_name]),
    ]
    inits = [_const("W", w2), _const("b", np.full(out_width, bias, np.float32))]
    inputs = [_io("segment", len(SEGMENTS)), _io("creative", CREATIVE_DIM)]
    return _model(nodes, inputs, [_io(out_name, out_width)], inits)
