"""Spec files people write (campaigns, simulator scenarios): YAML or JSON in, and errors out
that name the field at fault — one line per problem, `source: field.path: message`."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = [
    "SpecError",
    "control_chars",
    "format_validation_error",
    "parse_model",
    "read_spec_file",
]

M = TypeVar("M", bound=BaseModel)


class SpecError(ValueError):
    """A spec file that cannot be read or does not validate; the message names the field."""


def control_chars(value: Any, where: str = "") -> str | None:
    """Where the first control character (NUL, newline, ESC, DEL, C1 ...) is in a value (keys
    of dicts included) and which, as U+XXXX; None when there is none."""
    if isinstance(value, str):
        bad = next((ch for ch in value if unicodedata.category(ch) == "Cc"), None)
        return None if bad is None else f"{where or 'value'} contains U+{ord(bad):04X}"
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            items += [(f"{where} key".strip(), k), (f"{where}.{k}".lstrip("."), v)]
    elif isinstance(value, (list, tuple)):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    return next((found for w, v in items if (found := control_chars(v, w))), None)


def format_validation_error(exc: ValidationError, source: str = "campaign spec") -> str:
    """One line per problem: `source: field.path: message`."""
    lines = []
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            elif part in ("categorical", "numeric", "color") and loc.endswith("]"):
                continue  # the discriminator tag pydantic adds to the path
            else:
                loc += f".{part}" if loc else str(part)
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {loc + ': ' if loc else ''}{msg}")
    return "\n".join(lines)


def read_spec_file(path: Path | str) -> Any:
    """Parse a YAML (.yaml/.yml) or JSON file into Python data, with a clear error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the file ({exc.strerror})") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(
            f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}"
        ) from None
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply") from None
    except ValueError:  # the parsers' only other ValueError: an integer with too many digits
        raise SpecError(
            f"{path}: a number has more than {sys.get_int_max_str_digits()} digits"
        ) from None


def parse_model(model: type[M], data: Any, source: str) -> M:
    """Validate a mapping as `model`; raise SpecError naming the fields at fault."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source)) from None
