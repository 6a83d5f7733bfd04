"""Shapes every resource shares: problems, pages, locations, text rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f]")
# The same rules as JSON Schema patterns (ECMA-262), so clients and generators see them too.
# "Visible" excludes whitespace (\s, and U+0085 which Python strips but ECMA's \s lacks):
# a value of only whitespace is empty once trimmed.
_LINE_CHAR = r"[^\x00-\x1f\x7f]"
_TEXT_CHAR = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_VISIBLE_CHAR = r"[^\s\x00-\x1f\x7f\x85]"


@dataclass(frozen=True)
class JsonPattern:
    """Documents a `pattern` that a validator enforces (with a friendlier message)."""

    pattern: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema: dict[str, Any] = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


def _pattern(char: str, min_length: int) -> JsonPattern:
    if min_length < 1:
        return JsonPattern(f"^{char}*$")
    return JsonPattern(f"^{char}*{_VISIBLE_CHAR}{char}*$")


def _single_line(value: str) -> str:
    # Names end up in push notifications and on other people's screens.
    if _CONTROL_OR_NEWLINE.search(value):
        raise ValueError("must not contain control characters (newlines, tabs, ...)")
    return value


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters other than newlines and tabs")
    return value


def Line(max_length: int, min_length: int = 1) -> type[str]:
    """One line of user text, trimmed."""
    return Annotated[  # type: ignore[return-value]
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(_single_line),
        _pattern(_LINE_CHAR, min_length),
    ]


def Text(max_length: int, min_length: int = 0) -> type[str]:
    """Free text (newlines allowed), trimmed."""
    return Annotated[  # type: ignore[return-value]
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(_printable),
        _pattern(_TEXT_CHAR, min_length),
    ]


class StrictModel(BaseModel):
    """A JSON body: unknown fields are an error, and "5" is not a number."""

    model_config = ConfigDict(extra="forbid", strict=True)


class QueryModel(BaseModel):
    """A query string: every value arrives as text, so numbers are parsed; unknown names fail."""

    model_config = ConfigDict(extra="forbid")


class Location(StrictModel):
    lat: float = Field(ge=-90, le=90, examples=[52.5200])
    lng: float = Field(ge=-180, le=180, examples=[13.4050])


class FieldProblem(BaseModel):
    field: str = Field(examples=["display_name"])
    message: str = Field(examples=["String should have at most 100 characters"])
    code: str = Field(examples=["string_too_long"])


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error."""

    type: str = Field(examples=["/problems/validation-failed"])
    title: str = Field(examples=["Request validation failed"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["Fix these fields and send again: display_name."])
    instance: str | None = Field(None, examples=["/v1/me"])
    request_id: str | None = Field(None, examples=["6f1c0a7d2b9e4c55a0d1e2f3a4b5c6d7"])
    errors: list[FieldProblem] | None = None


class PageQuery(QueryModel):
    cursor: str | None = Field(None, max_length=512, description="`next_cursor` of the last page")
    limit: int = Field(20, ge=1, le=100)
