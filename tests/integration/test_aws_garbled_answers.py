"""An AWS endpoint that answers an HTML page (a captive proxy, a crashed emulator) where XML
or JSON belongs: botocore cannot parse it (ResponseParserError, which is no BotoCoreError),
and every adapter reports it as its own 'unavailable' error, so routes answer 503, not 500."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.aws.cognito import CognitoGroups, DirectoryUnavailable
from services.aws.s3 import S3Store, StorageUnavailable
from services.aws.sns import PushUnavailable, SnsPush

PAGE = b"<html><body><h1>Gateway says hello</h1><p>unclosed</body>"


class _HtmlErrors(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(PAGE)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def garbled(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlErrors)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    for variable in ("AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_COGNITO_IDP"):
        monkeypatch.setenv(variable, url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    yield url
    server.shutdown()


def test_sns_register_publish_and_delete(garbled: str) -> None:
    arn = "arn:aws:sns:us-east-1:123456789012:app/GCM/trellis"
    push = SnsPush(region="us-east-1", applications={"android": arn})
    with pytest.raises(PushUnavailable):
        push.register(platform="android", token="t" * 40, user_data="u", arn=None)
    with pytest.raises(PushUnavailable):
        push.publish(arn=arn + "/endpoint", message="{}")
    with pytest.raises(PushUnavailable):
        push.unregister(arn + "/endpoint")


def test_s3_delete(garbled: str) -> None:
    store = S3Store(bucket="trellis-uploads", region="us-east-1", kms_key_id=None)
    with pytest.raises(StorageUnavailable):
        store.delete("uploads/a")


def test_cognito_groups(garbled: str) -> None:
    groups = CognitoGroups(user_pool_id="us-east-1_Abc123", region="us-east-1")
    with pytest.raises(DirectoryUnavailable):
        groups.add_to_group("alice", "providers", sub="sub-alice")
