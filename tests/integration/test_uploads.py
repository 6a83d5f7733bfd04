"""Uploads against moto's S3: limits before any URL, the exact key, verification, access."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from models import Upload, User
from models.base import utcnow
from services.aws.s3 import ObjectStore, S3Store
from tests.conftest import make_app, make_settings
from tests.support.actors import make_actor
from tests.support.aws import REGION, emulated_aws
from tests.support.bookings import booking_in, ensure_profile
from tests.support.fakes import FakeStore

BUCKET = "trellis-uploads-test"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with emulated_aws():
        yield boto3.client("s3", region_name=REGION)


@pytest.fixture
def store(request: pytest.FixtureRequest) -> ObjectStore:
    """With `s3` among a test's fixtures, the app stores in moto's S3."""
    if "s3" not in request.fixturenames:
        return FakeStore()
    request.getfixturevalue("s3")  # the emulator is up before the adapter is built
    store = S3Store(bucket=BUCKET, region=REGION, kms_key_id=None)
    store.ensure_bucket(cors_origins=["*"])
    return store


def start(actor, **overrides: Any) -> Any:  # type: ignore[no-untyped-def]
    body = {"purpose": "avatar", "content_type": "image/png", "size_bytes": 1234, **overrides}
    return actor.post("/v1/uploads", json=body)


def put(s3: Any, key: str, size: int, content_type: str) -> None:
    """What the phone's POST would leave in the bucket."""
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x" * size, ContentType=content_type)


def test_presigned_post_pins_key_type_size_and_kms(actors, s3) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    response = start(user, filename="../../etc/passwd.png")
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "filename"
    response = start(user, filename="me at the beach.png")
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    fields = body["upload"]["fields"]
    key = fields["key"]
    assert key.startswith(f"users/{user.id}/avatar/") and "beach" not in key
    uuid.UUID(key.rsplit("/", 1)[1])
    assert fields["Content-Type"] == "image/png"
    assert fields["x-amz-server-side-encryption"] == "aws:kms"
    assert body["status"] == "pending" and body["filename"] == "me at the beach.png"
    policy = __import__("base64").b64decode(fields["policy"]).decode()
    assert '"content-length-range", 1, 1234' in policy
    assert f'"$key", "{key}"' in policy


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"content_type": "application/pdf"}, "content_type"),
        ({"size_bytes": 5 * 1024 * 1024 + 1}, "size_bytes"),
        ({"purpose": "booking_attachment"}, "booking_id"),
        ({"booking_id": str(uuid.uuid4())}, "booking_id"),
        ({"content_type": "image/png; x=1"}, "content_type"),
        ({"size_bytes": 0}, "size_bytes"),
        ({"purpose": "selfie"}, "purpose"),
    ],
)
def test_out_of_limits_is_422_before_any_url(
    actors, s3, session: Session, overrides, field
) -> None:  # type: ignore[no-untyped-def]
    response = start(actors("consumer"), **overrides)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.get_json()["errors"]]
    assert session.query(Upload).count() == 0


def test_provider_documents_need_the_provider_role(actors, s3) -> None:  # type: ignore[no-untyped-def]
    document = {"purpose": "provider_document", "content_type": "application/pdf"}
    assert start(actors("consumer"), **document).status_code == 403
    assert start(actors("provider"), **document).status_code == 201


def test_right_file_becomes_ready_and_the_avatar(actors, s3, session: Session) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    upload = start(user).get_json()
    put(s3, upload["upload"]["fields"]["key"], 1234, "image/png")
    done = user.post(f"/v1/uploads/{upload['id']}/complete")
    assert done.status_code == 200 and done.get_json()["status"] == "ready"
    assert user.post(f"/v1/uploads/{upload['id']}/complete").status_code == 200  # idempotent
    row = session.get(User, uuid.UUID(user.id))
    session.refresh(row)
    assert row is not None and str(row.avatar_upload_id) == upload["id"]
    fetched = user.get(f"/v1/uploads/{upload['id']}").get_json()
    url = fetched["download_url"]
    assert upload["upload"]["fields"]["key"] in url and "X-Amz-Signature=" in url


@pytest.mark.parametrize("idempotency_key", [None, "complete-once"])
@pytest.mark.parametrize(("size", "content_type"), [(999, "image/png"), (1234, "image/jpeg")])
def test_wrong_file_is_deleted_and_422(  # type: ignore[no-untyped-def]
    actors, s3, session: Session, size: int, content_type: str, idempotency_key: str | None
) -> None:
    """The rejection is kept (row rejected, object gone) with and without Idempotency-Key:
    a refusal the service returns is committed before the 422 is answered."""
    user = actors("consumer")
    upload = start(user).get_json()
    key = upload["upload"]["fields"]["key"]
    put(s3, key, size, content_type)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    complete = f"/v1/uploads/{upload['id']}/complete"
    response = user.post(complete, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["code"] in ("size_mismatch", "type_mismatch")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount") == 0
    assert session.get(Upload, uuid.UUID(upload["id"])).status == "rejected"
    assert user.get(f"/v1/uploads/{upload['id']}").get_json()["status"] == "rejected"
    if idempotency_key:  # the retry replays the refusal; the row stays rejected
        replay = user.post(complete, headers=headers)
        assert replay.status_code == 422 and replay.headers["Idempotent-Replayed"] == "true"
    assert user.post(complete).status_code == 409


def test_complete_before_upload_is_422_and_stays_pending(actors, s3) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    upload = start(user).get_json()
    response = user.post(f"/v1/uploads/{upload['id']}/complete")
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["code"] == "not_uploaded"
    assert user.get(f"/v1/uploads/{upload['id']}").get_json()["status"] == "pending"


def test_booking_attachment_is_visible_to_the_other_party_only(actors, s3) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, stranger = actors("consumer"), actors("provider"), actors("consumer")
    ensure_profile(provider)
    booking_id = booking_in("accepted", consumer, provider)
    upload = start(
        consumer,
        purpose="booking_attachment",
        booking_id=booking_id,
        content_type="application/pdf",
    ).get_json()
    put(s3, upload["upload"]["fields"]["key"], 1234, "application/pdf")
    consumer.post(f"/v1/uploads/{upload['id']}/complete")
    assert provider.get(f"/v1/uploads/{upload['id']}").get_json()["download_url"]
    for call in (
        lambda: stranger.get(f"/v1/uploads/{upload['id']}"),
        lambda: stranger.post(f"/v1/uploads/{upload['id']}/complete"),
        lambda: stranger.delete(f"/v1/uploads/{upload['id']}"),
        lambda: provider.delete(f"/v1/uploads/{upload['id']}"),  # only the owner deletes
    ):
        assert call().status_code == 404
    # A stranger cannot attach files to someone else's booking either.
    other = start(
        stranger,
        purpose="booking_attachment",
        booking_id=booking_id,
        content_type="application/pdf",
    )
    assert other.status_code == 422


def test_delete_removes_object_row_and_avatar(actors, s3, session: Session) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    upload = start(user).get_json()
    key = upload["upload"]["fields"]["key"]
    put(s3, key, 1234, "image/png")
    user.post(f"/v1/uploads/{upload['id']}/complete")
    assert user.delete(f"/v1/uploads/{upload['id']}").status_code == 204
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount") == 0
    assert user.get(f"/v1/uploads/{upload['id']}").status_code == 404
    row = session.get(User, uuid.UUID(user.id))
    session.refresh(row)
    assert row is not None and row.avatar_upload_id is None


def test_cleanup_removes_abandoned_pending_uploads(app, actors, s3, session: Session) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    old, fresh = start(user).get_json(), start(user).get_json()
    put(s3, old["upload"]["fields"]["key"], 10, "image/png")  # half-done: object, no complete
    session.execute(
        update(Upload)
        .where(Upload.id == uuid.UUID(old["id"]))
        .values(created_at=utcnow() - timedelta(days=2))
    )
    session.commit()
    result = app.test_cli_runner().invoke(args=["uploads", "cleanup"])
    assert result.exit_code == 0 and "removed 1" in result.output, result.output
    assert user.get(f"/v1/uploads/{old['id']}").status_code == 404
    assert user.get(f"/v1/uploads/{fresh['id']}").status_code == 200
    assert (
        s3.list_objects_v2(Bucket=BUCKET, Prefix=old["upload"]["fields"]["key"]).get("KeyCount")
        == 0
    )


def test_s3_down_presign_still_works_complete_is_503(build, signing_key, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Real adapter whose every request fails: presigning is local, HEAD needs S3.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    store = S3Store(bucket=BUCKET, region=REGION, kms_key_id="alias/trellis")
    user = make_actor(make_app(build(store=store)).test_client(), signing_key, "consumer")
    created = start(user)
    assert created.status_code == 201
    fields = created.get_json()["upload"]["fields"]
    assert fields["x-amz-server-side-encryption-aws-kms-key-id"] == "alias/trellis"
    response = user.post(f"/v1/uploads/{created.get_json()['id']}/complete")
    assert response.status_code == 503 and "Retry-After" in response.headers


def test_custom_limits_from_settings(build, database_url, signing_key, s3) -> None:  # type: ignore[no-untyped-def]
    avatar = '{"avatar": {"max_bytes": 100, "content_types": ["image/png"]}}'
    custom = make_settings(database_url, UPLOAD_LIMITS=avatar)
    user = make_actor(make_app(build(custom)).test_client(), signing_key, "consumer")
    assert start(user, size_bytes=101).status_code == 422
    assert start(user, size_bytes=100).status_code == 201


def test_infra_ensure_sets_the_bucket_up(s3, store) -> None:  # type: ignore[no-untyped-def]
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rule = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert s3.get_bucket_cors(Bucket=BUCKET)["CORSRules"][0]["AllowedMethods"] == ["POST", "GET"]
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"


def test_with_a_cdn_avatar_url_is_the_cdn_url_of_the_current_avatar_everywhere(  # type: ignore[no-untyped-def]
    build, database_url, signing_key, s3, store
) -> None:
    cdn = "https://d1234.cloudfront.net"
    custom = make_settings(database_url, ASSETS_CDN_BASE_URL=cdn + "/")
    client = make_app(build(custom, store=store)).test_client()
    consumer = make_actor(client, signing_key, "consumer")
    provider = make_actor(client, signing_key, "provider")
    ensure_profile(provider, display_name="Cdn Carla")
    booking_id = booking_in("requested", consumer, provider)

    def shown() -> set[str | None]:
        hits = consumer.get("/v1/providers?q=Cdn Carla").get_json()["items"]
        booking = consumer.get(f"/v1/bookings/{booking_id}").get_json()
        return {
            provider.get("/v1/me").get_json()["avatar_url"],
            provider.get("/v1/me/provider-profile").get_json()["avatar_url"],
            consumer.get(f"/v1/providers/{provider.id}").get_json()["avatar_url"],
            hits[0]["avatar_url"],
            booking["provider"]["avatar_url"],
        }

    assert shown() == {None}
    keys = []
    for _ in range(2):  # the first avatar, then its replacement
        upload = start(provider).get_json()
        keys.append(upload["upload"]["fields"]["key"])
        put(s3, keys[-1], 1234, "image/png")
        assert provider.post(f"/v1/uploads/{upload['id']}/complete").status_code == 200
        assert shown() == {f"{cdn}/{keys[-1]}"}
    assert provider.delete(f"/v1/uploads/{upload['id']}").status_code == 204
    assert shown() == {None}
