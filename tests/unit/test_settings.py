"""Settings: defaults, derived values, and refusals that name the variable."""

from __future__ import annotations

import pytest

from services.base.settings import SettingsError, database_url_from_env, load_settings

POOL = "eu-west-1_AbC123"
BASE = {
    "COGNITO_USER_POOL_ID": POOL,
    "COGNITO_APP_CLIENT_IDS": "client-a",
    "UPLOADS_BUCKET": "up",
    "EXPORT_BUCKET": "ex",
}
AWS_ISSUER = f"https://cognito-idp.eu-west-1.amazonaws.com/{POOL}"


def test_defaults_in_production() -> None:
    settings = load_settings(
        {**BASE, "AWS_REGION": "eu-west-1", "DATABASE_URL": "postgresql://db/x"}
    )
    assert settings.app_env == "production"
    assert settings.issuer == AWS_ISSUER
    assert settings.jwks_url == f"{AWS_ISSUER}/.well-known/jwks.json"
    assert settings.db_url == "postgresql+psycopg2://db/x"
    assert settings.cognito_token_use == "any"
    assert settings.max_body_bytes == 1_048_576
    assert settings.cognito_app_client_ids == ("client-a",)


def test_client_ids_are_comma_separated() -> None:
    settings = load_settings({**BASE, "APP_ENV": "test", "COGNITO_APP_CLIENT_IDS": " a, b ,,c "})
    assert settings.cognito_app_client_ids == ("a", "b", "c")


def test_development_defaults_to_sqlite_and_accepts_an_emulator_jwks() -> None:
    settings = load_settings(
        {
            **BASE,
            "APP_ENV": "development",
            "COGNITO_JWKS_URL": f"http://127.0.0.1:5000/{POOL}/.well-known/jwks.json",
        }
    )
    assert settings.db_url.startswith("sqlite:///")
    assert settings.jwks_url.startswith("http://127.0.0.1:5000/")
    assert settings.issuer == AWS_ISSUER  # the pool id names its region


def test_missing_and_malformed_variables_are_all_named() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {"APP_ENV": "staging", "MAX_BODY_BYTES": "lots", "COGNITO_USER_POOL_ID": "nope"}
        )
    message = str(caught.value)
    for name in ("APP_ENV", "MAX_BODY_BYTES", "COGNITO_USER_POOL_ID", "COGNITO_APP_CLIENT_IDS"):
        assert name in message


def test_empty_client_list_is_refused() -> None:
    with pytest.raises(SettingsError, match="COGNITO_APP_CLIENT_IDS"):
        load_settings({**BASE, "APP_ENV": "test", "COGNITO_APP_CLIENT_IDS": " , "})


def test_production_requires_a_database_and_a_bucket() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL is required"):
        load_settings(BASE)
    with pytest.raises(SettingsError, match="UPLOADS_BUCKET is required"):
        load_settings({**BASE, "DATABASE_URL": "postgresql://db/x", "UPLOADS_BUCKET": ""})


def test_upload_limits_and_cors_origins() -> None:
    settings = load_settings(
        {
            **BASE,
            "APP_ENV": "test",
            "UPLOAD_LIMITS": '{"avatar": {"max_bytes": 1000, "content_types": ["image/png"]}}',
            "UPLOADS_CORS_ORIGINS": "https://a.example, https://b.example",
        }
    )
    assert settings.upload_limits["avatar"].max_bytes == 1000
    assert settings.uploads_cors_origins == ("https://a.example", "https://b.example")
    for bad in ("not json", '{"selfie": {}}', '{"avatar": {"max_bytes": 0}}'):
        with pytest.raises(SettingsError, match="UPLOAD_LIMITS"):
            load_settings({**BASE, "APP_ENV": "test", "UPLOAD_LIMITS": bad})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COGNITO_JWKS_URL", f"http://127.0.0.1:5000/{POOL}/.well-known/jwks.json"),
        ("COGNITO_ISSUER", "https://evil.example/pool"),
    ],
)
def test_production_refuses_any_other_key_source(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({**BASE, "DATABASE_URL": "postgresql://db/x", name: value})


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings({**BASE, "APP_ENV": "test", "DATABASE_URL": "mysql://db/x"})


def test_database_url_for_tools_needs_no_cognito() -> None:
    assert database_url_from_env({"APP_ENV": "development"}).startswith("sqlite:///")
    assert database_url_from_env({"DATABASE_URL": "postgres://h/d"}) == "postgresql+psycopg2://h/d"
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        database_url_from_env({})


def test_the_issuer_follows_the_pools_region_not_the_apps() -> None:
    # A DR environment runs in another region but trusts the pool where users sign in.
    settings = load_settings(
        {
            **BASE,
            "AWS_REGION": "us-west-2",
            "DATABASE_URL": "postgresql://db/x",
            "EXPORT_BUCKET": "e",
        }
    )
    assert settings.cognito_region == "eu-west-1"
    assert settings.issuer == AWS_ISSUER
