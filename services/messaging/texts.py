"""Notification texts from message catalogs, in the reader's language and time zone.

An inbox entry stores its *event*: a message id of `MESSAGES` and its parameters (times as
ISO 8601 UTC). The text is rendered for each reader when it is read: per device when the
outbox relay sends the push (the device's `locale` and `time_zone`), per request in the
inbox API. Times are shown in the reader's zone, else the event's fallback zone (the
provider's, from their availability), else UTC.

The catalogs are gettext .po files under locales/<language>/LC_MESSAGES/messages.po, read
and compiled in memory on first use (Babel): no build step, so `make run`, the tests and
`eb deploy` (which ships the source tree) all find them. English is the message ids
themselves; locales/en's catalog may override a wording without a code change.

Adding a message: add it to MESSAGES (wrapped in N_), then, in services/messaging,
    pybabel extract -k N_ -k N_plural:1,2 --no-location -o locales/messages.pot texts.py
    pybabel update -i locales/messages.pot -d locales
and translate it in every catalog (tests/unit/test_notification_texts.py refuses a
catalog that lacks one).
"""

from __future__ import annotations

import io
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALES_DIR = Path(__file__).with_name("locales")
DOMAIN = "messages"
DEFAULT_LANGUAGE = "en"
LANGUAGES = ("en", "de")  # a catalog for each under LOCALES_DIR


def N_(message: str) -> str:  # gettext's marker: extracted, translated later
    return message


def N_plural(singular: str, plural: str) -> tuple[str, str]:
    return singular, plural


@dataclass(frozen=True)
class Template:
    """A message's title and body (msgids). `body` None: the body is the `text` parameter
    as it is (a chat message). `plural`: the body's (singular, plural) forms, chosen by
    the `count` parameter. `with_reason`: the body when a `reason` is given."""

    title: str
    body: str | None = None
    plural: tuple[str, str] | None = None
    with_reason: str | None = None


MESSAGES: dict[str, Template] = {
    "booking.requested": Template(
        N_("New booking request"), N_("New %(category)s booking request for %(starts_at)s")
    ),
    "booking.accept": Template(
        N_("Booking accepted"), N_("Your %(category)s booking on %(starts_at)s was accepted")
    ),
    "booking.decline": Template(
        N_("Booking declined"),
        N_("Your booking request for %(starts_at)s was declined"),
        with_reason=N_("Your booking request for %(starts_at)s was declined: %(reason)s"),
    ),
    "booking.start": Template(N_("Booking started"), N_("Your %(category)s booking has started")),
    "booking.complete": Template(
        N_("Booking complete"), N_("Your booking is complete: how did it go?")
    ),
    "booking.cancel": Template(
        N_("Booking cancelled"),
        N_("The booking on %(starts_at)s was cancelled"),
        with_reason=N_("The booking on %(starts_at)s was cancelled: %(reason)s"),
    ),
    "booking.expire": Template(
        N_("Booking request expired"),
        N_("The request for %(starts_at)s expired without an answer"),
    ),
    "booking.auto_complete": Template(
        N_("Booking complete"), N_("Your booking is complete: how did it go?")
    ),
    "booking.reschedule_proposed": Template(
        N_("New time proposed"), N_("A new time is proposed for your booking: %(proposed_at)s")
    ),
    "booking.reschedule_declined": Template(
        N_("New time declined"),
        N_("The new time was declined; your booking stays on %(starts_at)s"),
    ),
    "booking.rescheduled": Template(
        N_("Booking moved"), N_("Your booking was moved to %(starts_at)s")
    ),
    "booking.reminder": Template(
        N_("Booking reminder"),
        plural=N_plural(
            "Your %(category)s booking starts in %(count)d minute, at %(starts_at)s",
            "Your %(category)s booking starts in %(count)d minutes, at %(starts_at)s",
        ),
    ),
    "message.new": Template(N_("New message")),
    "report.dismiss": Template(
        N_("Your report was reviewed"),
        N_("We looked into what you reported and found it within the rules."),
    ),
    "report.remove_content": Template(
        N_("Your report was reviewed"), N_("Thank you: we removed what you reported.")
    ),
    "report.suspend_user": Template(
        N_("Your report was reviewed"),
        N_("Thank you: we took action against the account behind what you reported."),
    ),
    "data_export.ready": Template(
        N_("Your data is ready"),
        plural=N_plural(
            "The copy of your data you asked for can be downloaded for %(count)d day.",
            "The copy of your data you asked for can be downloaded for %(count)d days.",
        ),
    ),
}


@dataclass(frozen=True)
class Message:
    """A notification's event: `id` (a MESSAGES key), its parameters (strings, integers;
    times as ISO 8601, in keys ending in `_at`) and the zone to show times in when the
    reader has none of their own."""

    id: str
    params: Mapping[str, str | int] = field(default_factory=dict)
    zone: str | None = None

    def __post_init__(self) -> None:
        if self.id not in MESSAGES:
            raise ValueError(f"no message {self.id!r} in services/messaging/texts.py")

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "params": dict(self.params), "zone": self.zone}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Message:
        return cls(str(value["id"]), dict(value.get("params") or {}), value.get("zone"))


@dataclass(frozen=True)
class Reader:
    """Whom a text is rendered for: their locale (a BCP 47 or POSIX tag as a device sends
    it, e.g. de-DE; None: English) and IANA zone (None: the message's fallback)."""

    locale: str | None = None
    zone: str | None = None


ENGLISH = Reader()


@cache
def known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@cache
def _locale(tag: str | None) -> Locale:
    """The Babel locale for a device's tag, if there is a catalog for its language; else
    English. de-AT keeps its region (its formats), fr-FR becomes en."""
    if tag:
        try:
            parsed = Locale.parse(tag.replace("-", "_"))
        except (ValueError, TypeError, UnknownLocaleError):
            parsed = None
        if parsed is not None and parsed.language in LANGUAGES:
            return parsed
    return Locale.parse(DEFAULT_LANGUAGE)


def has_catalog(tag: str) -> bool:
    """Whether a language tag (de-DE, en, fr) is one Trellis has texts in."""
    return tag.replace("-", "_").split("_")[0].lower() in LANGUAGES


@cache
def catalog(language: str) -> Translations:
    """The language's catalog, compiled from its .po in memory (once per process)."""
    path = LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as source:
        parsed = read_po(source, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, parsed)
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


def format_when(value: datetime, locale: Locale, zone: str) -> str:
    """A time as the reader reads it: "Monday, December 7, 2026, 4:00 AM EST" in English,
    "Montag, 7. Dezember 2026, 10:00 MEZ" in German (Europe/Berlin)."""
    tz = zoneinfo.ZoneInfo(zone)
    local = value.astimezone(tz)
    day = format_date(local, "full", locale=locale)
    clock = format_time(local, "short", tzinfo=tz, locale=locale)
    name = format_time(local, "z", tzinfo=tz, locale=locale)
    pattern = str(locale.datetime_formats["medium"])
    return pattern.replace("{1}", day).replace("{0}", f"{clock} {name}")


def _zone(reader: Reader, message: Message) -> str:
    for candidate in (reader.zone, message.zone):
        if candidate and candidate in known_zones():
            return candidate
    return "UTC"


def render(message: Message, reader: Reader = ENGLISH) -> tuple[str, str]:
    """(title, body) of `message` for `reader`."""
    template = MESSAGES[message.id]
    locale = _locale(reader.locale)
    translations = catalog(locale.language)
    zone = _zone(reader, message)
    values: dict[str, str | int] = {}
    for key, value in message.params.items():
        if key.endswith("_at") and isinstance(value, str):
            values[key] = format_when(datetime.fromisoformat(value), locale, zone)
        else:
            values[key] = value
    title = translations.gettext(template.title)
    if template.plural is not None:
        singular, plural = template.plural
        body = translations.ngettext(singular, plural, int(values["count"])) % values
    elif template.body is None:
        body = str(values.get("text", ""))
    elif template.with_reason is not None and values.get("reason"):
        body = translations.gettext(template.with_reason) % values
    else:
        body = translations.gettext(template.body) % values
    return title, body


def msgids() -> set[str | tuple[str, str]]:
    """Every message id the code renders (singular and plural as one pair)."""
    ids: set[str | tuple[str, str]] = set()
    for template in MESSAGES.values():
        ids.add(template.title)
        ids.update(t for t in (template.body, template.with_reason) if t is not None)
        if template.plural is not None:
            ids.add(template.plural)
    return ids
