"""What the export may take: the default plan, EXPORT_TABLES, and the deny-list it cannot
override; the new settings' defaults."""

from __future__ import annotations

import pytest

from services.analytics.export import DEFAULT_TABLES, DENIED_COLUMNS, DENIED_TABLES, plan_tables
from services.base.settings import SettingsError, load_settings
from services.components import build_components

BASE = {
    "APP_ENV": "test",
    "COGNITO_USER_POOL_ID": "eu-west-1_AbC123",
    "COGNITO_APP_CLIENT_IDS": "c",
}


def test_default_plan_has_no_secrets_and_no_contact_details() -> None:
    plan = {table.name: table.column_names for table in plan_tables()}
    assert list(plan) == list(DEFAULT_TABLES)
    assert not set(plan) & DENIED_TABLES
    assert not {(t, c) for t, columns in plan.items() for c in columns} & DENIED_COLUMNS
    assert plan["users"] == ["id", "roles", "created_at", "updated_at"]
    assert {"address", "notes", "lat", "lng"}.isdisjoint(plan["bookings"])
    assert "body" not in plan["messages"]


def test_change_column_is_updated_at_else_created_at_else_received_at() -> None:
    changed = {table.name: table.changed.name for table in plan_tables()}
    assert changed["bookings"] == "updated_at"
    assert changed["messages"] == "created_at"
    assert changed["events"] == "received_at"


def test_key_and_change_column_always_go_along() -> None:
    [table] = plan_tables({"bookings": ["status"]})
    assert table.column_names == ["id", "status", "updated_at"]


def test_star_takes_every_column_but_the_denied_ones() -> None:
    [devices] = plan_tables({"devices": "*"})
    assert "token" not in devices.column_names and "endpoint_arn" not in devices.column_names
    assert "platform" in devices.column_names


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ('{"devices": ["id", "token"]}', "devices.token may never be exported"),
        ('{"devices": ["endpoint_arn"]}', "devices.endpoint_arn may never be exported"),
        ('{"idempotency_keys": "*"}', "'idempotency_keys' may never be exported"),
        ('{"outbox_messages": ["id"]}', "'outbox_messages' may never be exported"),
        ('{"export_watermarks": "*"}', "may never be exported"),
        ('{"nope": "*"}', "unknown table 'nope'"),
        ('{"users": ["id", "shoe_size"]}', "unknown column users.shoe_size"),
        ('{"provider_categories": "*"}', "no single UUID or integer primary key"),
        ('{"users": "id"}', "EXPORT_TABLES"),
        ("users", "must be JSON"),
    ],
)
def test_export_tables_refuses_denied_and_unknown_names(tables: str, message: str) -> None:
    """The shape is the settings' to check, the names the composition root's: both fail the
    start-up with a message naming EXPORT_TABLES."""
    with pytest.raises(SettingsError, match="EXPORT_TABLES") as caught:
        build_components(load_settings({**BASE, "EXPORT_TABLES": tables}))
    assert message in str(caught.value)


def test_export_and_worker_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.export_bucket == "trellis-exports-test"
    assert settings.export_tables is None
    assert settings.export_part_rows == 50_000
    assert settings.export_safety_seconds == 60
    assert settings.export_max_seconds == 20
    assert settings.worker_tasks_enabled is False
    configured = load_settings(
        {
            **BASE,
            "EXPORT_BUCKET": "x-exports",
            "EXPORT_TABLES": '{"events": "*", "users": ["id"]}',
            "WORKER_TASKS_ENABLED": "true",
        }
    )
    assert configured.export_bucket == "x-exports"
    assert [t.name for t in plan_tables(configured.export_tables)] == ["events", "users"]
    assert configured.worker_tasks_enabled is True


def test_production_requires_an_export_bucket() -> None:
    production = {
        **BASE,
        "APP_ENV": "production",
        "DATABASE_URL": "postgresql://db/x",
        "UPLOADS_BUCKET": "up",
    }
    with pytest.raises(SettingsError, match="EXPORT_BUCKET is required"):
        load_settings(production)
    assert load_settings({**production, "EXPORT_BUCKET": "ex"}).export_bucket == "ex"
