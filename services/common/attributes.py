"""Attribute declarations of a campaign's creative space (the `attributes` list of a spec).

Five kinds, each a strict pydantic model with a `check(value)` (None or what is wrong) and a
`canonical(value)` (the value as a Creative record carries it):

```yaml
- {name: headline, kind: categorical, values: ["Save 20%", "New in"]}
- {name: font_scale, kind: numeric, min: 0.8, max: 1.6}
- {name: background, kind: color}
- {name: hue, kind: circular, min: 0, max: 360}          # 360 is 0 again
- {name: key, kind: circular, min: 0, max: 12, step: 1}  # circle of fifths: 12 keys
- name: melody
  kind: sequence
  length: 8
  fields: [{name: degree, values: ["1", "2", "3", "5", "6", "8"]},
           {name: duration, values: ["1/8", "1/4", "1/2"]}]
```

A sequence value is written as text `"5:1/4 3:1/8 …"` (steps by space, fields by colon) or as a
list of steps; records carry the text (services/common/attribute_kinds.py).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common.attribute_kinds import SequenceShape, circular_positions
from services.common.spec_files import control_chars

__all__ = [
    "Attribute",
    "AttributeDecl",
    "CategoricalAttribute",
    "CircularAttribute",
    "ColorAttribute",
    "NumericAttribute",
    "SequenceAttribute",
    "SequenceField",
    "Strict",
]

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, v: Any) -> Any:
        found = control_chars(v)
        if found:
            raise ValueError(f"{found}, a control character; text must be printable")
        return v


class CategoricalAttribute(Strict):
    name: str = Field(pattern=_NAME)
    kind: Literal["categorical"]
    values: list[str] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dupes = sorted({x for x in v if v.count(x) > 1})
        if dupes:
            raise ValueError(f"values must be unique; repeated: {dupes}")
        return v

    def check(self, value: Any) -> str | None:
        if not isinstance(value, str) or value not in self.values:
            return f"{value!r} is not one of {self.values}"
        return None

    def canonical(self, value: Any) -> str:
        return str(value)


class NumericAttribute(Strict):
    name: str = Field(pattern=_NAME)
    kind: Literal["numeric"]
    min: float
    max: float

    @model_validator(mode="after")
    def _range(self) -> NumericAttribute:
        if not self.min < self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self

    def check(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{value!r} is not a number"
        if not self.min <= value <= self.max:
            return f"{value} is outside [{self.min}, {self.max}]"
        return None

    def canonical(self, value: Any) -> float:
        return float(value)


class ColorAttribute(Strict):
    name: str = Field(pattern=_NAME)
    kind: Literal["color"]

    def check(self, value: Any) -> str | None:
        if not isinstance(value, str) or not _COLOR.match(value):
            return f"{value!r} is not a color '#rrggbb'"
        return None

    def canonical(self, value: Any) -> str:
        return str(value).lower()


class CircularAttribute(Strict):
    """A number on a circle: ``max`` is ``min`` again (hue, key on the circle of fifths)."""

    name: str = Field(pattern=_NAME)
    kind: Literal["circular"]
    min: float
    max: float
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _range(self) -> CircularAttribute:
        if not (math.isfinite(self.min) and math.isfinite(self.max) and self.min < self.max):
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        if self.step is not None:
            circular_positions(self.min, self.max, self.step)
        return self

    def check(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{value!r} is not a number"
        if not self.min <= value < self.max:
            return f"{value} is outside [{self.min}, {self.max}) (the circle's max is its min)"
        if self.step is not None:
            k = (value - self.min) / self.step
            if abs(k - round(k)) > 1e-9:
                return f"{value} is not min + a multiple of step {self.step}"
        return None

    def canonical(self, value: Any) -> float:
        return float(value)


class SequenceField(Strict):
    name: str = Field(pattern=_NAME)
    values: list[str] = Field(min_length=1)


class SequenceAttribute(Strict):
    """`length` steps, each one value of every field (a melody's degree and duration)."""

    name: str = Field(pattern=_NAME)
    kind: Literal["sequence"]
    length: int = Field(ge=1, le=64)
    fields: list[SequenceField] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape_ok(self) -> SequenceAttribute:
        self.shape()  # raises ValueError naming what is wrong
        return self

    def shape(self) -> SequenceShape:
        return SequenceShape(self.length, tuple((f.name, tuple(f.values)) for f in self.fields))

    def check(self, value: Any) -> str | None:
        try:
            self.shape().parse(value)
        except ValueError as exc:
            return str(exc)
        return None

    def canonical(self, value: Any) -> str:
        return self.shape().canonical(value)


AttributeDecl = (
    CategoricalAttribute | NumericAttribute | ColorAttribute | CircularAttribute | SequenceAttribute
)
Attribute = Annotated[AttributeDecl, Field(discriminator="kind")]
