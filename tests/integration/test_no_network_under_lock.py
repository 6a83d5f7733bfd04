"""No network call while a row lock is held: role changes and suspensions call Cognito, and
device deletes call SNS, before they lock (or conditionally write) the row, on PostgreSQL.

Each lock test holds the row from another connection, sends the request from a thread, and
checks that the adapter was called while the row was still held (a request that locked
first would wait for the lock instead). Then it releases the row, and the request must
finish with the right outcome."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from models import Device, RoleChange, User
from models.base import utcnow
from tests.conftest import BuildComponents, make_app
from tests.support.actors import Actor, make_actor
from tests.support.fakes import FakeGroups, FakePush
from tests.support.tokens import SigningKey

IOS_TOKEN = "c" * 64
WAIT = 5.0  # seconds: a regression fails after this rather than hanging


@dataclass
class RecordingGroups(FakeGroups):
    """FakeGroups that sets `called` when a group change (the Cognito call) is made, and
    runs `meanwhile` (if set) after each one."""

    called: threading.Event = field(default_factory=threading.Event)
    calls: int = 0
    meanwhile: Callable[[], None] | None = None

    def add_to_group(self, username: str, group: str, *, sub: str) -> None:
        super().add_to_group(username, group, sub=sub)
        self._done()

    def remove_from_group(self, username: str, group: str, *, sub: str) -> None:
        super().remove_from_group(username, group, sub=sub)
        self._done()

    def admin_disable_user(self, username: str, *, sub: str) -> None:
        super().admin_disable_user(username, sub=sub)
        self._done()

    def admin_enable_user(self, username: str, *, sub: str) -> None:
        super().admin_enable_user(username, sub=sub)
        self._done()

    def _done(self) -> None:
        self.calls += 1
        self.called.set()
        if self.meanwhile is not None:
            self.meanwhile()


@dataclass
class RecordingPush(FakePush):
    """FakePush that sets `unregistered` when an endpoint is deleted (the SNS call), and
    runs `meanwhile` (if set) after each one."""

    unregistered: threading.Event = field(default_factory=threading.Event)
    deleted: list[str] = field(default_factory=list)
    meanwhile: Callable[[], None] | None = None

    def unregister(self, arn: str) -> None:
        super().unregister(arn)
        self.deleted.append(arn)
        self.unregistered.set()
        if self.meanwhile is not None:
            self.meanwhile()


@contextmanager
def row_locked(engine: Engine, table: str, row_id: str) -> Iterator[None]:
    """Holds `SELECT ... FOR UPDATE` on the row from a connection of its own."""
    with engine.connect() as connection, connection.begin():
        locked = connection.execute(
            text(f"SELECT id FROM {table} WHERE id = :id FOR UPDATE"), {"id": row_id}
        ).all()
        assert len(locked) == 1
        yield


def in_thread(request: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(response=request()), daemon=True)
    thread.start()
    return thread, result


@dataclass
class HeldCall:
    called_under_lock: bool  # the network call was made while the rows were held
    waited: bool  # and the request then waited for them, to write
    response: Any


def call_while_held(
    engine: Engine, rows: list[tuple[str, str]], request: Callable[[], Any], called: threading.Event
) -> HeldCall:
    """Run `request` while other transactions hold `rows` (table, id); `called` is set by the
    fake when the network call happens."""
    with ExitStack() as held:
        for table, row_id in rows:
            held.enter_context(row_locked(engine, table, row_id))
        thread, result = in_thread(request)
        called_under_lock = called.wait(timeout=WAIT)
        thread.join(timeout=0.2)
        waited = thread.is_alive()
    thread.join(timeout=WAIT)
    assert not thread.is_alive(), "the request never finished"
    return HeldCall(called_under_lock, waited, result["response"])


def committed(engine: Engine, statement: str, **values: Any) -> None:
    """Another transaction's write, committed at once; refuses to wait for a lock."""
    with engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
        connection.execute(text(statement), values)


def admin_and_user(
    build: BuildComponents, signing_key: SigningKey, groups: FakeGroups, *roles: str
) -> tuple[Actor, Actor]:
    client = make_app(build(groups=groups)).test_client()
    admin = make_actor(client, signing_key, "admin")
    user = make_actor(client, signing_key, *roles)
    assert admin.id and user.id  # both signed in before any row is held
    return admin, user


# --- role changes: Cognito is called before the user row is locked ---------------------


def test_a_grant_calls_cognito_while_the_user_row_is_held_elsewhere(  # type: ignore[no-untyped-def]
    build, signing_key, engine: Engine, session: Session
) -> None:
    groups = RecordingGroups()
    admin, user = admin_and_user(build, signing_key, groups, "consumer")
    run = call_while_held(
        engine,
        [("users", user.id)],
        lambda: admin.post(f"/v1/admin/users/{user.id}/roles", json={"role": "provider"}),
        groups.called,
    )
    assert run.called_under_lock, "Cognito was called only once the user row was free"
    assert run.waited, "the grant was recorded while another transaction held the row"
    response = run.response
    assert response.status_code == 200, response.get_data(as_text=True)
    assert (user.sub, "providers") in groups.members and groups.calls == 1
    change = session.scalars(select(RoleChange)).one()
    assert (str(change.user_id), change.role, change.action) == (user.id, "provider", "grant")


def test_a_revoke_calls_cognito_while_the_user_row_is_held_elsewhere(  # type: ignore[no-untyped-def]
    build, signing_key, engine: Engine, session: Session
) -> None:
    groups = RecordingGroups()
    admin, user = admin_and_user(build, signing_key, groups, "provider")
    groups.members.add((user.sub, "providers"))
    with row_locked(engine, "users", user.id):
        thread, result = in_thread(
            lambda: admin.delete(f"/v1/admin/users/{user.id}/roles/provider")
        )
        called_under_lock = groups.called.wait(timeout=WAIT)
    thread.join(timeout=WAIT)
    assert called_under_lock, "Cognito was called only once the user row was free"
    assert not thread.is_alive()
    response = result["response"]
    assert response.status_code == 200, response.get_data(as_text=True)
    assert (user.sub, "providers") not in groups.members
    change = session.scalars(select(RoleChange)).one()
    assert (change.role, change.action) == ("provider", "revoke")
    row = session.get(User, uuid.UUID(user.id))
    assert row is not None and "provider" in row.role_revocations and row.roles == []


def test_a_role_change_recorded_meanwhile_makes_the_grant_call_cognito_again(  # type: ignore[no-untyped-def]
    build, signing_key, engine: Engine, session: Session
) -> None:
    """Another admin revokes between our Cognito call and our record: their removal may
    have reached Cognito after our addition, so ours is made again, then recorded."""
    groups = RecordingGroups()
    admin, user = admin_and_user(build, signing_key, groups, "consumer")

    def another_admin_revokes() -> None:
        if groups.calls == 1:
            groups.members.discard((user.sub, "providers"))
            record_change(engine, user.id, admin.id, "revoke", seconds_ago=1)

    groups.meanwhile = another_admin_revokes
    response = admin.post(f"/v1/admin/users/{user.id}/roles", json={"role": "provider"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert groups.calls == 2 and (user.sub, "providers") in groups.members
    changes = session.scalars(select(RoleChange).order_by(RoleChange.created_at)).all()
    assert [c.action for c in changes] == ["revoke", "grant"]  # Cognito holds the last one


def test_a_role_changed_by_others_every_time_is_409_and_records_nothing(  # type: ignore[no-untyped-def]
    build, signing_key, engine: Engine, session: Session
) -> None:
    groups = RecordingGroups()
    admin, user = admin_and_user(build, signing_key, groups, "consumer")
    groups.meanwhile = lambda: record_change(engine, user.id, admin.id, "revoke")
    response = admin.post(f"/v1/admin/users/{user.id}/roles", json={"role": "provider"})
    assert response.status_code == 409, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert groups.calls == 3
    actions = session.scalars(select(RoleChange.action)).all()
    assert actions == ["revoke"] * 3  # only the other admin's


def record_change(
    engine: Engine, user_id: str, actor_id: str, action: str, seconds_ago: float = 0
) -> None:
    committed(
        engine,
        "INSERT INTO role_changes (id, user_id, role, action, actor_id, created_at)"
        " VALUES (:id, :user_id, 'provider', :action, :actor_id,"
        " :now - make_interval(secs => :ago))",
        id=uuid.uuid4(),
        user_id=user_id,
        action=action,
        actor_id=actor_id,
        now=utcnow(),
        ago=seconds_ago,
    )


# --- suspensions: Cognito is called before the report and user rows are locked --------


def reported_provider(
    build: BuildComponents, signing_key: SigningKey, groups: FakeGroups
) -> tuple[Actor, Actor, str]:
    """An admin, a provider, and a consumer's open report of the provider's message."""
    from tests.support.bookings import booking_in, ensure_profile

    admin, provider = admin_and_user(build, signing_key, groups, "provider")
    consumer = make_actor(admin.client, signing_key, "consumer")
    ensure_profile(provider)
    booking = booking_in("accepted", consumer, provider)
    sent = provider.post(f"/v1/bookings/{booking}/messages", json={"body": "Hi"})
    body = {"target_type": "message", "target_id": sent.get_json()["id"], "reason": "spam"}
    report = consumer.post("/v1/reports", json=body)
    assert report.status_code == 201, report.get_data(as_text=True)
    return admin, provider, report.get_json()["id"]


def test_a_suspension_calls_cognito_while_the_report_and_user_rows_are_held_elsewhere(  # type: ignore[no-untyped-def]
    build, signing_key, engine: Engine, session: Session
) -> None:
    groups = RecordingGroups()
    admin, provider, report_id = reported_provider(build, signing_key, groups)
    resolve = f"/v1/admin/reports/{report_id}/resolve"
    run = call_while_held(
        engine,
        [("reports", report_id), ("users", provider.id)],
        lambda: admin.post(resolve, json={"action": "suspend_user", "note": "Abuse"}),
        groups.called,
    )
    assert run.called_under_lock, "Cognito was called only once the rows were free"
    assert run.waited, "the suspension was recorded while another transaction held a row"
    response = run.response
    assert response.status_code == 200, response.get_data(as_text=True)
    assert groups.switches == [("disable", provider.sub)]
    row = session.get(User, uuid.UUID(provider.id))
    assert row is not None and row.suspended_at is not None


def test_lifting_a_suspension_calls_cognito_while_the_user_row_is_held_elsewhere(  # type: ignore[no-untyped-def]
    build, signing_key, engine: Engine, session: Session
) -> None:
    groups = RecordingGroups()
    admin, provider, report_id = reported_provider(build, signing_key, groups)
    resolve = f"/v1/admin/reports/{report_id}/resolve"
    assert admin.post(resolve, json={"action": "suspend_user"}).status_code == 200
    groups.called.clear()
    run = call_while_held(
        engine,
        [("users", provider.id)],
        lambda: admin.post(f"/v1/admin/users/{provider.id}/unsuspend"),
        groups.called,
    )
    assert run.called_under_lock, "Cognito was called only once the user row was free"
    assert run.waited, "the suspension was lifted while another transaction held the row"
    response = run.response
    assert response.status_code == 200, response.get_data(as_text=True)
    assert groups.switches == [("disable", provider.sub), ("enable", provider.sub)]
    row = session.get(User, uuid.UUID(provider.id))
    assert row is not None and row.suspended_at is None


# --- device deletes: SNS is called before the device row is deleted --------------------


def registered(build: BuildComponents, signing_key: SigningKey, push: FakePush) -> Actor:
    client = make_app(build(push=push)).test_client()
    user = make_actor(client, signing_key, "consumer")
    response = user.post("/v1/devices", json={"platform": "ios", "token": IOS_TOKEN})
    assert response.status_code == 200, response.get_data(as_text=True)
    return user


def test_deleting_a_device_calls_sns_while_its_row_is_held_elsewhere(  # type: ignore[no-untyped-def]
    build, signing_key, engine: Engine, session: Session
) -> None:
    push = RecordingPush()
    user = registered(build, signing_key, push)
    device = session.scalars(select(Device)).one()
    run = call_while_held(
        engine,
        [("devices", str(device.id))],
        lambda: user.delete(f"/v1/devices/{device.id}"),
        push.unregistered,
    )
    assert run.called_under_lock, "SNS was called only once the device row was free"
    assert run.waited, "the row was deleted while another transaction held it"
    response = run.response
    assert response.status_code == 204, response.get_data(as_text=True)
    assert push.deleted == [device.endpoint_arn] and push.endpoints == {}
    assert session.scalar(select(func.count()).select_from(Device)) == 0


def test_a_device_registered_again_meanwhile_loses_its_new_endpoint_too(  # type: ignore[no-untyped-def]
    build, signing_key, engine: Engine, session: Session
) -> None:
    """Between our SNS call and our DELETE the token got a new endpoint: the row is not
    deleted while it names an endpoint that still exists; the new one goes first."""
    push = RecordingPush()
    user = registered(build, signing_key, push)
    device = session.scalars(select(Device)).one()
    renewed = f"{device.endpoint_arn}-renewed"

    def registered_again() -> None:
        if len(push.deleted) == 1:
            push.endpoints[renewed] = IOS_TOKEN
            committed(
                engine, "UPDATE devices SET endpoint_arn = :arn WHERE id = :id",
                arn=renewed, id=device.id,
            )  # fmt: skip

    push.meanwhile = registered_again
    response = user.delete(f"/v1/devices/{device.id}")
    assert response.status_code == 204, response.get_data(as_text=True)
    assert push.deleted == [device.endpoint_arn, renewed] and push.endpoints == {}
    assert session.scalar(select(func.count()).select_from(Device)) == 0


def test_the_relay_keeps_no_device_row_locked_while_it_publishes(  # type: ignore[no-untyped-def]
    build: BuildComponents, signing_key: SigningKey, engine: Engine, session: Session
) -> None:
    """A device SNS calls gone is disabled at the end of the relay's batch: while the batch
    goes on publishing, a request may still lock (e.g. delete) that device's row."""
    from services.aws.sns import EndpointGone
    from services.base.unit_of_work import transaction
    from services.messaging import notifications, outbox

    lock_free: list[bool] = []

    class GoneThenProbe(FakePush):
        def publish(self, *, arn: str, message: str) -> str:
            if arn == self.gone_arn:
                raise EndpointGone(arn)
            with engine.connect() as other:  # is the gone device's row free right now?
                other.execute(text("SET lock_timeout = '500ms'"))
                try:
                    other.execute(
                        text("SELECT id FROM devices WHERE endpoint_arn = :arn FOR UPDATE"),
                        {"arn": self.gone_arn},
                    )
                    lock_free.append(True)
                except Exception:
                    lock_free.append(False)
                other.rollback()
            return super().publish(arn=arn, message=message)

    push = GoneThenProbe()
    built = build(push=push)
    client = make_app(built).test_client()
    uninstalled, installed = (make_actor(client, signing_key, "consumer") for _ in range(2))
    uninstalled.post("/v1/devices", json={"platform": "ios", "token": IOS_TOKEN})
    installed.post("/v1/devices", json={"platform": "ios", "token": "d" * 64})
    push.gone_arn = session.scalar(
        select(Device.endpoint_arn).where(Device.user_id == uuid.UUID(uninstalled.id))
    )
    for actor in (uninstalled, installed):  # the gone device's push due first
        with transaction(built.sessions) as writer:
            notifications.notify(
                writer, user_id=uuid.UUID(actor.id), kind="k", title="t", body="b", data={}
            )
    stats = outbox.drain(built.sessions, push)
    assert stats.devices_disabled == 1 and lock_free == [True]
    enabled = select(Device.enabled).where(Device.endpoint_arn == push.gone_arn)
    assert session.scalar(enabled) is False
