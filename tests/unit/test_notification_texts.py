"""The notification catalogs: every message the code renders is translated in every
language, with the same placeholders; plurals and fallbacks work; the catalogs load from
the committed .po files with no build step."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from services.messaging import texts
from services.messaging.texts import Message, Reader, render

PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
STARTS = "2026-12-07T09:00:00+00:00"  # a Monday: 10:00 in Berlin, 04:00 in New York


def _read(path: Path, language: str | None = None) -> Catalog:
    with path.open("rb") as source:
        return read_po(source, locale=language)


def _po(language: str) -> Catalog:
    return _read(texts.LOCALES_DIR / language / "LC_MESSAGES" / "messages.po", language)


def _ids(catalog: Catalog) -> set[str | tuple[str, str]]:
    return {m.id for m in catalog if m.id}


def test_the_template_holds_exactly_the_messages_the_code_renders() -> None:
    template = _read(texts.LOCALES_DIR / "messages.pot")
    assert _ids(template) == texts.msgids()


@pytest.mark.parametrize("language", texts.LANGUAGES)
def test_every_catalog_has_every_message(language: str) -> None:
    catalog = _po(language)
    assert _ids(catalog) == texts.msgids(), "run pybabel update (services/messaging/texts.py)"
    assert list(catalog.check()) == []  # python-format placeholders agree, plurals complete
    if language == texts.DEFAULT_LANGUAGE:
        return  # English is the ids themselves (a translation here overrides the wording)
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"{language}: {message.id!r} is not translated"
        assert not message.fuzzy, f"{language}: {message.id!r} is fuzzy"
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        wanted = set(PLACEHOLDER.findall(ids[-1]))
        for string in strings:
            assert set(PLACEHOLDER.findall(string)) == wanted, (language, message.id, string)


def test_no_compiled_catalog_is_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The .po files are the catalogs: with nothing but them German renders (no .mo is
    built, by `make run`, the tests or `eb deploy`)."""
    for po in texts.LOCALES_DIR.rglob("*.po"):
        target = tmp_path / po.relative_to(texts.LOCALES_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(po, target)
    monkeypatch.setattr(texts, "LOCALES_DIR", tmp_path)
    texts.catalog.cache_clear()
    try:
        title, _ = render(Message("message.new", {"text": "Hallo"}), Reader("de"))
    finally:
        texts.catalog.cache_clear()
    assert title == "Neue Nachricht"
    assert {p.suffix for p in tmp_path.rglob("*") if p.is_file()} == {".po"}


@pytest.mark.parametrize(
    ("count", "english", "german"),
    [
        (1, "starts in 1 minute, at", "beginnt in 1 Minute, am"),
        (60, "starts in 60 minutes, at", "beginnt in 60 Minuten, am"),
    ],
)
def test_the_reminder_is_pluralised(count: int, english: str, german: str) -> None:
    message = Message(
        "booking.reminder", {"category": "cleaning", "count": count, "starts_at": STARTS}
    )
    assert english in render(message, Reader("en-GB", "Europe/London"))[1]
    title, body = render(message, Reader("de-DE", "Europe/Berlin"))
    assert title == "Erinnerung an Ihre Buchung" and german in body
    assert "Montag, 7. Dezember 2026, 10:00 MEZ" in body


def test_times_in_the_readers_zone_else_the_fallback_else_utc() -> None:
    params = {"category": "cleaning", "starts_at": STARTS}
    berlin = Message("booking.accept", params, zone="Europe/Berlin")
    assert render(berlin, Reader("en-US", "America/New_York")) == (
        "Booking accepted",
        "Your cleaning booking on Monday, December 7, 2026, 4:00\u202fAM EST was accepted",
    )
    # No zone of the reader's: the message's (the provider's); none there either: UTC.
    assert "10:00" in render(berlin, Reader("de"))[1]
    assert "MEZ" in render(berlin, Reader("de"))[1]
    utc = Message("booking.accept", params)
    assert render(utc, Reader("de", "Not/AZone"))[1] == (
        "Ihre Buchung (cleaning) am Montag, 7. Dezember 2026, 09:00 UTC wurde angenommen"
    )


@pytest.mark.parametrize("locale", [None, "", "fr-FR", "xx", "zz-!!", "pt_BR", "EN"])
def test_an_unknown_locale_falls_back_to_english(locale: str | None) -> None:
    message = Message("booking.cancel", {"starts_at": STARTS, "reason": "Ill"})
    title, body = render(message, Reader(locale, "UTC"))
    assert title == "Booking cancelled"
    assert body == "The booking on Monday, December 7, 2026, 9:00\u202fAM UTC was cancelled: Ill"


def test_a_regional_german_keeps_its_language() -> None:
    message = Message("booking.start", {"category": "cleaning", "starts_at": STARTS})
    for locale in ("de", "de-AT", "de_CH", "DE-de"):
        assert render(message, Reader(locale))[0] == "Buchung begonnen", locale


def test_an_unknown_message_is_refused() -> None:
    with pytest.raises(ValueError, match="no message"):
        Message("booking.teleported")


def test_the_english_text_is_what_older_code_reads() -> None:
    """notify() stores render(message) (English, the fallback zone) in title and body."""
    message = Message("booking.requested", {"category": "cleaning", "starts_at": STARTS})
    assert render(message) == (
        "New booking request",
        "New cleaning booking request for Monday, December 7, 2026, 9:00\u202fAM UTC",
    )


def test_reports_and_exports_are_translated_too() -> None:
    ready = Message("data_export.ready", {"count": 7})
    assert render(ready, Reader("de")) == (
        "Ihre Daten sind bereit",
        "Die angeforderte Kopie Ihrer Daten kann 7 Tage lang heruntergeladen werden.",
    )
    assert render(Message("data_export.ready", {"count": 1}))[1].endswith("for 1 day.")
    for action in ("dismiss", "remove_content", "suspend_user"):
        assert render(Message(f"report.{action}"), Reader("de"))[0] == "Ihre Meldung wurde geprüft"
