"""Shapes every resource shares: problems, pages, locations, text rules."""

from __future__ import annotations

import unicodedata
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

# Text one person types and another person sees (in an app, a push notification, a log or an
# export) must show what it says. Refused, by Unicode general category:
#   Cc      controls: C0 (NUL, ESC...), DEL and C1 (U+0085 NEXT LINE, U+009B CSI...)
#   Cf      format: invisible or reordering, e.g. U+200B ZERO WIDTH SPACE, U+202E RIGHT-TO-LEFT
#           OVERRIDE, U+2066-U+2069 isolates, U+FEFF, U+00AD SOFT HYPHEN, tags U+E0000-U+E007F
#   Zl, Zp  U+2028, U+2029: line breaks to a phone, though code that splits on \n misses them
#   Co      private use: no agreed glyph, shown differently (or not at all) on each phone
#   Cs      surrogates: halves of UTF-16 pairs (pydantic and the JSON parser refuse them first)
#   Cn      unassigned: no meaning today, any meaning tomorrow
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})
# Two format characters writing needs: U+200D ZERO WIDTH JOINER builds emoji sequences (family,
# rainbow flag) and Indic conjuncts; U+200C ZERO WIDTH NON-JOINER is part of Persian spelling.
# Each passes only between two shown characters, so neither can pad a text invisibly, stand
# alone (a name of one joiner looks empty) or sit beside another joiner or a space.
_JOINERS = frozenset("\u200c\u200d")
# The only emoji made with tag characters: the flags of England, Scotland and Wales. Other
# runs of tags are invisible ASCII ("ASCII smuggling"), so only these three pass.
_TAG_FLAGS = tuple(
    "\U0001f3f4" + "".join(chr(0xE0000 + ord(c)) for c in region) + "\U000e007f"
    for region in ("gbeng", "gbsct", "gbwls")
)
# Control characters have no Unicode name; these are their aliases.
_CONTROL_NAMES = {
    "\x00": "NULL",
    "\t": "CHARACTER TABULATION",
    "\n": "LINE FEED",
    "\r": "CARRIAGE RETURN",
    "\x1b": "ESCAPE",
    "\x7f": "DELETE",
    "\x85": "NEXT LINE",
    "\x9b": "CONTROL SEQUENCE INTRODUCER",
}
_UNNAMED = {
    "Cc": "a control character",
    "Co": "a private-use character",
    "Cs": "a surrogate",
    "Cn": "an unassigned code point",
}
_LINE_BREAKS = frozenset("\x85\u2028\u2029")

# The same rules as JSON Schema patterns (ECMA-262), so clients and generators see them too.
# Only the Basic Multilingual Plane is listed: without the u flag a pattern sees UTF-16 code
# units, and unassigned code points are too many to list, so the server refuses a little more.
_HIDDEN = (
    r"\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f"
    r"\u2028-\u202e\u2060-\u2064\u2066-\u206f\ue000-\uf8ff\ufeff\ufff9-\ufffb"
)
_LINE_CHAR = rf"[^\x00-\x1f{_HIDDEN}]"
_TEXT_CHAR = rf"[^\x00-\x08\x0b\x0c\x0e-\x1f{_HIDDEN}]"
# "Visible" excludes whitespace and the joiners: at least one character must show.
_VISIBLE_CHAR = rf"[^\s\x00-\x1f{_HIDDEN}\u200c\u200d]"


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


def _shown(char: str) -> bool:
    return (
        char != "" and not char.isspace() and unicodedata.category(char) not in _REFUSED_CATEGORIES
    )


def _joins(value: str, index: int) -> bool:
    """A joiner at `index` with a shown character on each side."""
    before, after = value[index - 1 : index], value[index + 1 : index + 2]
    return value[index] in _JOINERS and _shown(before) and _shown(after)


def _first_refused(value: str, allowed: frozenset[str]) -> int | None:
    """The index of the first character `value` may not hold, or None."""
    # str.isprintable is False for every refused category (and for spaces other than
    # U+0020): a string it passes holds nothing to refuse, checked in C, not per character.
    if value.isprintable():
        return None
    index = 0
    while index < len(value):
        flag = next((f for f in _TAG_FLAGS if value.startswith(f, index)), None)
        if flag is not None:
            index += len(flag)
            continue
        char = value[index]
        refused = char not in allowed and unicodedata.category(char) in _REFUSED_CATEGORIES
        if refused and not _joins(value, index):
            return index
        index += 1
    return None


def _describe(char: str) -> str:
    name = (
        unicodedata.name(char, "")
        or _CONTROL_NAMES.get(char)
        or _UNNAMED.get(unicodedata.category(char), "")
    )
    return f"U+{ord(char):04X} ({name})"


def _single_line(value: str) -> str:
    # Names end up in push notifications and on other people's screens.
    index = _first_refused(value, allowed=frozenset())
    if index is not None:
        raise ValueError(
            f"one line of printable characters only: {_describe(value[index])} "
            f"at index {index} is not allowed"
        )
    return value


def _printable(value: str) -> str:
    # Free text keeps its line breaks and tabs: \n (and \r\n from some keyboards) and \t.
    index = _first_refused(value, allowed=frozenset("\n\r\t"))
    if index is not None:
        hint = " (use \\n to break lines)" if value[index] in _LINE_BREAKS else ""
        raise ValueError(
            f"printable characters only: {_describe(value[index])} "
            f"at index {index} is not allowed{hint}"
        )
    return value


def Line(max_length: int, min_length: int = 1) -> type[str]:
    """One line of printable text, trimmed; an error names the first refused character and its
    index (in code points from 0, in the trimmed text)."""
    return Annotated[  # type: ignore[return-value]
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(_single_line),
        _pattern(_LINE_CHAR, min_length),
    ]


def Text(max_length: int, min_length: int = 0) -> type[str]:
    """Free printable text, trimmed: like Line, but newlines and tabs are allowed."""
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
    """RFC 9457 problem details, the body of every error. Types with more members have
    schemas of their own (api/schemas/problems.py), named where a route can answer them."""

    type: str = Field(
        description="`/problems/<name>` for Trellis's own types; `about:blank` for plain HTTP",
        examples=["/problems/not-found"],
    )
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["No such booking."])
    instance: str | None = Field(None, description="the request's path", examples=["/v1/me"])
    request_id: str | None = Field(
        None,
        description="the X-Request-Id of the request; quote it when reporting a problem",
        examples=["6f1c0a7d2b9e4c55a0d1e2f3a4b5c6d7"],
    )


class PageQuery(QueryModel):
    cursor: str | None = Field(None, max_length=512, description="`next_cursor` of the last page")
    limit: int = Field(20, ge=1, le=100)
