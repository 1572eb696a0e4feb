"""Build a valid example value for any Avro schema (used to round-trip every record)."""

from __future__ import annotations

import datetime as dt
from typing import Any

_NOW = dt.datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=dt.UTC)


def example(schema: Any, named: dict[str, Any] | None = None, depth: int = 0) -> Any:
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in named:
            return example(named[schema], named, depth)
        return _primitive(schema)
    if isinstance(schema, list):  # union: take the last branch, usually the non-null one
        return example(schema[-1], named, depth)
    t = schema["type"]
    if schema.get("logicalType") == "timestamp-millis":
        return _NOW
    if t == "record":
        named[schema["name"]] = schema
        if "namespace" in schema:
            named[f"{schema['namespace']}.{schema['name']}"] = schema
        return {f["name"]: example(f["type"], named, depth + 1) for f in schema["fields"]}
    if t == "enum":
        named[schema["name"]] = schema
        return schema["symbols"][-1]
    if t == "array":
        return [example(schema["items"], named, depth + 1) for _ in range(2)]
    if t == "map":
        return {"k1": example(schema["values"], named, depth + 1)}
    return example(t, named, depth)


def _primitive(name: str) -> Any:
    return {
        "string": "héllo ✓",
        "bytes": b"\x00\xffbytes",
        "int": -42,
        "long": 2**40,
        "float": 1.5,
        "double": 0.25,
        "boolean": True,
        "null": None,
    }[name]
