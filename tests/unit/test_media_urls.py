"""AvatarUrls: a CDN URL when one is configured, else a presigned GET signed once a period."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from services.aws.s3 import S3Store, StorageUnavailable
from services.media_urls import AvatarUrls
from tests.conftest import make_settings

KEY = "users/0b9c9f0e-6a39-4b8e-9b64-3c1d2f1f8a10/avatar/6f1c2d3e-0a1b-4c5d-8e9f-a0b1c2d3e4f5"


class CountingStore(S3Store):
    """The real adapter (presigning is local work), counting what it signs."""

    def __init__(self) -> None:
        super().__init__(bucket="trellis-uploads-test", region="us-east-1", kms_key_id=None)
        self.signed: list[str] = []

    def presign_get(self, *, key: str, expires_in: int) -> str:
        self.signed.append(key)
        return super().presign_get(key=key, expires_in=expires_in)


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_with_a_cdn_the_url_is_base_and_key_and_nothing_is_signed() -> None:
    store = CountingStore()
    urls = AvatarUrls(store, cdn_base_url="https://d1234.cloudfront.net/", expires_in=300)
    assert urls.url(KEY) == f"https://d1234.cloudfront.net/{KEY}"
    assert urls.url(None) is None
    assert store.signed == []


def test_a_presigned_get_is_signed_once_a_period_and_keeps_most_of_its_life() -> None:
    now = [1_200_000.0]  # the start of a 60 s period
    store = CountingStore()
    urls = AvatarUrls(store, cdn_base_url=None, expires_in=300, clock=lambda: now[0])
    first = urls.url(KEY)
    assert first is not None
    query = parse_qs(urlsplit(first).query)
    assert urlsplit(first).path.endswith(KEY) and query["X-Amz-Expires"] == ["300"]
    now[0] += 59
    assert urls.url(KEY) == first  # the same period (a fifth of 300 s): not signed again
    assert urls.url(KEY.replace("6f1c", "7f1c")) != first
    assert len(store.signed) == 2
    now[0] += 1
    assert urls.url(KEY) is not None and len(store.signed) == 3  # a new period: signed anew
    assert urls.url(None) is None and len(store.signed) == 3


def test_a_signer_that_cannot_sign_gives_no_url_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(CountingStore):
        def presign_get(self, *, key: str, expires_in: int) -> str:
            raise StorageUnavailable("no credentials")

    assert AvatarUrls(Broken(), cdn_base_url=None, expires_in=300).url(KEY) is None
    assert "S3 cannot sign" in caplog.text


def test_the_cdn_setting_is_an_http_url_kept_without_its_trailing_slash() -> None:
    cdn = make_settings("sqlite://", ASSETS_CDN_BASE_URL="https://d1234.cloudfront.net/")
    assert cdn.assets_cdn_base_url == "https://d1234.cloudfront.net"
    assert make_settings("sqlite://").assets_cdn_base_url is None
    for bad in ("d1234.cloudfront.net", "ftp://cdn.example.com", "https://"):
        with pytest.raises(ValidationError):
            make_settings("sqlite://", ASSETS_CDN_BASE_URL=bad)
