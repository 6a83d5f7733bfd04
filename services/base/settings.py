"""Settings read once from environment variables and validated at start-up."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEVELOPMENT_DATABASE_URL = "sqlite:///instance/trellis-dev.db"
TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"

_RATE = re.compile(
    r"^\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day|month|year)s?\s*"
    r"([;,]\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day|month|year)s?\s*)*$"
)
_POOL_ID = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d_[0-9A-Za-z]+$")


class SettingsError(RuntimeError):
    """Raised when an environment variable is missing or malformed; the message names each one."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class UploadLimitSetting(BaseModel):
    """Overrides for one upload purpose (UPLOAD_LIMITS is a JSON object of these)."""

    model_config = ConfigDict(extra="forbid")

    max_bytes: int | None = Field(None, ge=1, le=5 * 1024**3)
    content_types: list[str] | None = Field(None, min_length=1)


class Settings(BaseModel):
    """Every setting Trellis reads. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    app_env: Literal["development", "test", "production"] = Field("production", alias="APP_ENV")
    database_url: str | None = Field(None, alias="DATABASE_URL")
    # Read replicas (comma-separated URLs); reads fall back to the primary when none fits.
    database_read_urls: tuple[str, ...] = Field((), alias="DATABASE_READ_URL")
    db_replica_max_lag_seconds: float = Field(
        10.0, gt=0, le=3600, alias="DB_REPLICA_MAX_LAG_SECONDS"
    )
    db_replica_retry_seconds: float = Field(15.0, gt=0, le=3600, alias="DB_REPLICA_RETRY_SECONDS")
    db_replica_check_seconds: float = Field(1.0, gt=0, le=60, alias="DB_REPLICA_CHECK_SECONDS")
    aws_region: str = Field("us-east-1", alias="AWS_REGION", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    cognito_user_pool_id: str = Field(alias="COGNITO_USER_POOL_ID")
    cognito_app_client_ids: Annotated[tuple[str, ...], Field(min_length=1)] = Field(
        alias="COGNITO_APP_CLIENT_IDS"
    )
    cognito_issuer: str | None = Field(None, alias="COGNITO_ISSUER")
    cognito_jwks_url: str | None = Field(None, alias="COGNITO_JWKS_URL")
    cognito_token_use: Literal["access", "id", "any"] = Field("any", alias="COGNITO_TOKEN_USE")
    token_leeway_seconds: int = Field(60, ge=0, le=300, alias="TOKEN_LEEWAY_SECONDS")
    jwks_timeout_seconds: float = Field(3.0, gt=0, le=30, alias="JWKS_TIMEOUT_SECONDS")
    max_body_bytes: int = Field(1_048_576, ge=1024, alias="MAX_BODY_BYTES")
    db_pool_size: int = Field(5, ge=1, le=100, alias="DB_POOL_SIZE")
    db_max_overflow: int = Field(5, ge=0, le=100, alias="DB_MAX_OVERFLOW")
    db_pool_timeout_seconds: float = Field(5.0, gt=0, le=60, alias="DB_POOL_TIMEOUT_SECONDS")
    db_connect_timeout_seconds: int = Field(3, ge=1, le=60, alias="DB_CONNECT_TIMEOUT_SECONDS")
    db_statement_timeout_ms: int = Field(10_000, ge=0, alias="DB_STATEMENT_TIMEOUT_MS")
    # Off behind RDS Proxy or PgBouncer in transaction mode (connections change hands).
    db_prepared_statements: bool = Field(True, alias="DB_PREPARED_STATEMENTS")
    uploads_bucket: str | None = Field(None, alias="UPLOADS_BUCKET")
    kms_key_id: str | None = Field(None, alias="KMS_KEY_ID")
    upload_url_expiry_seconds: int = Field(
        900, ge=60, le=7 * 24 * 3600, alias="UPLOAD_URL_EXPIRY_SECONDS"
    )
    download_url_expiry_seconds: int = Field(
        300, ge=30, le=7 * 24 * 3600, alias="DOWNLOAD_URL_EXPIRY_SECONDS"
    )
    upload_limits: dict[str, UploadLimitSetting] = Field(
        default_factory=dict, alias="UPLOAD_LIMITS"
    )
    uploads_cors_origins: Annotated[tuple[str, ...], Field(min_length=1)] = Field(
        ("*",), alias="UPLOADS_CORS_ORIGINS"
    )
    sns_platform_application_arn_ios: str | None = Field(
        None, alias="SNS_PLATFORM_APPLICATION_ARN_IOS"
    )
    sns_platform_application_arn_android: str | None = Field(
        None, alias="SNS_PLATFORM_APPLICATION_ARN_ANDROID"
    )
    outbox_relay_in_web: bool = Field(True, alias="OUTBOX_RELAY_IN_WEB")
    outbox_max_backoff_seconds: int = Field(300, ge=1, le=86400, alias="OUTBOX_MAX_BACKOFF_SECONDS")
    provider_notifications_per_hour: int = Field(
        10, ge=1, le=1000, alias="PROVIDER_NOTIFICATIONS_PER_HOUR"
    )
    sync_max_datasets: int = Field(20, ge=1, le=10_000, alias="SYNC_MAX_DATASETS")
    sync_max_records: int = Field(1024, ge=1, le=1_000_000, alias="SYNC_MAX_RECORDS")
    sync_max_dataset_bytes: int = Field(
        1024**2, ge=1024, le=1024**3, alias="SYNC_MAX_DATASET_BYTES"
    )
    sync_max_value_bytes: int = Field(
        64 * 1024, ge=16, le=16 * 1024**2, alias="SYNC_MAX_VALUE_BYTES"
    )
    redis_url: str | None = Field(None, alias="REDIS_URL")
    # Proxies in front of gunicorn whose X-Forwarded-For entries are trusted: 2 on Elastic
    # Beanstalk (the load balancer's entry, then nginx's); 0 when clients connect directly.
    proxy_hops: int = Field(0, ge=0, le=5, alias="PROXY_HOPS")
    # Browser origins allowed to call /v1/ (CORS); empty: no CORS headers at all.
    cors_origins: tuple[str, ...] = Field((), alias="CORS_ORIGINS")
    rate_limit_enabled: bool = Field(True, alias="RATE_LIMIT_ENABLED")
    rate_limit_key_prefix: str = Field("trellis", max_length=64, alias="RATE_LIMIT_KEY_PREFIX")
    rate_limit_default: str = Field("300/minute", alias="RATE_LIMIT_DEFAULT")
    rate_limit_anonymous: str = Field("60/minute", alias="RATE_LIMIT_ANONYMOUS")
    rate_limit_uploads: str = Field("30/minute", alias="RATE_LIMIT_UPLOADS")
    rate_limit_notifications: str = Field("30/minute", alias="RATE_LIMIT_NOTIFICATIONS")
    # Per client address, on POST /account/delete (the public deletion-request form).
    rate_limit_deletion_requests: str = Field("5/hour", alias="RATE_LIMIT_DELETION_REQUESTS")
    # Per user, on POST /v1/reports.
    rate_limit_reports: str = Field("20/hour", alias="RATE_LIMIT_REPORTS")
    # Terms the content filter flags (one a line, # comments); None: the list shipped in
    # services/base/content_filter_terms.txt. Read once at start-up (build_components).
    content_filter_terms_file: str | None = Field(None, alias="CONTENT_FILTER_TERMS_FILE")
    idempotency_ttl_hours: int = Field(24, ge=1, le=24 * 30, alias="IDEMPOTENCY_TTL_HOURS")
    # The change feed (services/realtime/feed.py): entries older than this are deleted.
    changes_retention_days: int = Field(30, ge=1, le=3650, alias="CHANGES_RETENTION_DAYS")
    # The realtime WebSocket process (realtime/, docs/realtime.md).
    realtime_port: int = Field(8001, ge=1, le=65535, alias="REALTIME_PORT")
    realtime_ping_seconds: float = Field(25.0, gt=0, le=300, alias="REALTIME_PING_SECONDS")
    realtime_max_sockets_per_user: int = Field(
        10, ge=1, le=1000, alias="REALTIME_MAX_SOCKETS_PER_USER"
    )
    # How often open sockets' accounts are checked again (suspension, roles, purge) besides
    # the feed's own account and role changes; also the feed's poll interval without NOTIFY.
    realtime_recheck_seconds: float = Field(5.0, gt=0, le=300, alias="REALTIME_RECHECK_SECONDS")
    # DELETE /v1/me needs a sign-in (the token's auth_time) at most this many seconds old.
    account_deletion_max_auth_age_seconds: int = Field(
        900, ge=60, le=86_400, alias="ACCOUNT_DELETION_MAX_AUTH_AGE_SECONDS"
    )
    # How long a scheduled deletion can be cancelled before the account is purged (0: none).
    account_deletion_grace_hours: int = Field(
        72, ge=0, le=24 * 90, alias="ACCOUNT_DELETION_GRACE_HOURS"
    )
    # Bookable slots start every this many minutes from the start of each available interval.
    slot_step_minutes: int = Field(30, ge=5, le=240, alias="SLOT_STEP_MINUTES")
    # The booking timers (services/marketplace/timers.py), applied when a timer is set: a
    # request unanswered this long (or at its start, if sooner) expires; a booking in
    # progress completes itself this long after its end; both parties are reminded this
    # long before the start of an accepted booking; reviews close this long after completion.
    booking_request_ttl_hours: int = Field(24, ge=1, le=24 * 30, alias="BOOKING_REQUEST_TTL_HOURS")
    auto_complete_after_hours: int = Field(12, ge=0, le=24 * 30, alias="AUTO_COMPLETE_AFTER_HOURS")
    reminder_minutes_before: int = Field(60, ge=1, le=7 * 24 * 60, alias="REMINDER_MINUTES_BEFORE")
    review_window_days: int = Field(14, ge=1, le=365, alias="REVIEW_WINDOW_DAYS")
    # Personal data exports (POST /v1/me/exports): how many a user may ask for in any 24 h;
    # how many times a build is tried before the export is `failed`; how long a builder
    # holds an export it claimed before another may take it over (longer than any build).
    exports_per_day: int = Field(3, ge=1, le=100, alias="EXPORTS_PER_DAY")
    data_export_max_attempts: int = Field(3, ge=1, le=20, alias="DATA_EXPORT_MAX_ATTEMPTS")
    data_export_lease_seconds: int = Field(900, ge=60, le=86_400, alias="DATA_EXPORT_LEASE_SECONDS")
    # Build pending exports in a background thread of each web worker (besides the
    # `accounts export-data` command and the worker tier's task).
    data_exports_in_web: bool = Field(True, alias="DATA_EXPORTS_IN_WEB")
    # The app's name on the public account-deletion page (GET /account/delete).
    app_name: str = Field("Trellis", min_length=1, max_length=100, alias="APP_NAME")
    # Days a closed deletion request is kept before the clean-up deletes it.
    deletion_requests_retention_days: int = Field(
        90, ge=1, le=3650, alias="DELETION_REQUESTS_RETENTION_DAYS"
    )
    export_bucket: str | None = Field(None, alias="EXPORT_BUCKET")
    # Table -> column names or "*"; None means services/analytics/export.py's DEFAULT_TABLES.
    # The names are checked against the schema and the deny-list by build_components: the
    # catalogue is the export's, and the shared base imports no domain.
    export_tables: dict[str, list[str] | Literal["*"]] | None = Field(None, alias="EXPORT_TABLES")
    export_part_rows: int = Field(50_000, ge=1, le=10_000_000, alias="EXPORT_PART_ROWS")
    export_safety_seconds: int = Field(60, ge=0, le=86_400, alias="EXPORT_SAFETY_SECONDS")
    # Below gunicorn's 30 s worker timeout: the worker tier runs the export inside a request.
    export_max_seconds: int = Field(20, ge=1, le=86_400, alias="EXPORT_MAX_SECONDS")
    worker_tasks_enabled: bool = Field(False, alias="WORKER_TASKS_ENABLED")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", alias="LOG_LEVEL")
    # The test suite's: each hot answer serialised from plain values is checked against its
    # schema (api/responses.py). Costs about as much as the schema would; off in production.
    response_checks: bool = Field(False, alias="RESPONSE_CHECKS")
    # CloudWatch namespace of the metrics in the log lines (services/base/metrics.py).
    metrics_namespace: str = Field(
        "Trellis",
        min_length=1,
        max_length=255,
        pattern=r"^([^A:][^:]*|A([^W:][^:]*)?|AW([^S:][^:]*)?|AWS([^/:][^:]*)?)$",  # not AWS/
        alias="METRICS_NAMESPACE",
    )
    # What the apps are told (GET /v1/config, flask client-config): the API's public base URL
    # (the endpoint falls back to the request's own); the realtime service's, once it exists.
    api_public_url: str | None = Field(
        None, pattern=r"^https?://[^/\s]+(/\S*)?$", alias="API_PUBLIC_URL"
    )
    realtime_public_url: str | None = Field(
        None, pattern=r"^(wss?|https?)://[^/\s]+(/\S*)?$", alias="REALTIME_PUBLIC_URL"
    )
    # Avatars through CloudFront: `{base}/{key}`; unset, a presigned GET of the object.
    assets_cdn_base_url: str | None = Field(
        None, pattern=r"^https?://[^/\s]+(/\S*)?$", alias="ASSETS_CDN_BASE_URL"
    )

    _split_client_ids = field_validator(
        "cognito_app_client_ids",
        "uploads_cors_origins",
        "database_read_urls",
        "cors_origins",
        mode="before",
    )(_split_csv)

    @field_validator("upload_limits", mode="before")
    @classmethod
    def _limits_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError('must be JSON, e.g. {"avatar": {"max_bytes": 5242880}}') from None
        return value

    @field_validator("export_tables", mode="before")
    @classmethod
    def _export_tables_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError('must be JSON, e.g. {"bookings": "*", "users": ["id"]}') from None
        return value

    @field_validator(
        "rate_limit_default",
        "rate_limit_anonymous",
        "rate_limit_uploads",
        "rate_limit_notifications",
        "rate_limit_reports",
        "rate_limit_deletion_requests",
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        if not _RATE.match(value):
            raise ValueError('must look like "300/minute" or "10 per second;1000/hour"')
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return value

    @field_validator("cognito_user_pool_id")
    @classmethod
    def _pool_id_shape(cls, value: str) -> str:
        if not _POOL_ID.match(value):
            raise ValueError("must look like <region>_<id>, e.g. us-east-1_AbCdEf123")
        return value

    @model_validator(mode="after")
    def _derive_and_check(self) -> Settings:
        # The pool id names its own region ("eu-west-1_AbC"): a DR environment in another
        # region (AWS_REGION for S3/SNS) still trusts the pool where users sign in.
        default_issuer = (
            f"https://cognito-idp.{self.cognito_region}.amazonaws.com/{self.cognito_user_pool_id}"
        )
        issuer = self.cognito_issuer or default_issuer
        jwks_url = self.cognito_jwks_url or f"{issuer}/.well-known/jwks.json"
        database_url = self.database_url or _default_database_url(self.app_env)
        if self.app_env == "production":
            # A JWKS from anywhere but the pool's own issuer would let whoever serves it mint
            # tokens (moto signs every pool with one key that ships inside the package).
            if issuer != default_issuer:
                raise ValueError(f"COGNITO_ISSUER must be {default_issuer} in production")
            if jwks_url != f"{default_issuer}/.well-known/jwks.json":
                raise ValueError("COGNITO_JWKS_URL must be the pool's own JWKS in production")
            if database_url is None:
                raise ValueError("DATABASE_URL is required in production")
            if not self.uploads_bucket:
                raise ValueError("UPLOADS_BUCKET is required in production")
            if not self.export_bucket:
                raise ValueError("EXPORT_BUCKET is required in production")
        object.__setattr__(self, "cognito_issuer", issuer)
        object.__setattr__(self, "cognito_jwks_url", jwks_url)
        if database_url is not None:
            database_url = normalize_database_url(database_url)
            if not database_url.startswith(("postgresql+psycopg2://", "sqlite://")):
                raise ValueError("DATABASE_URL must be a postgresql:// or sqlite:// URL")
        object.__setattr__(self, "database_url", database_url)
        read_urls = tuple(normalize_database_url(url) for url in self.database_read_urls)
        if any(not url.startswith("postgresql+psycopg2://") for url in read_urls):
            raise ValueError("DATABASE_READ_URL must list postgresql:// URLs")
        if read_urls and not (database_url or "").startswith("postgresql"):
            raise ValueError("DATABASE_READ_URL needs a PostgreSQL DATABASE_URL")
        object.__setattr__(self, "database_read_urls", read_urls)
        # One form: no trailing /.
        for name in ("api_public_url", "realtime_public_url", "assets_cdn_base_url"):
            if getattr(self, name):
                object.__setattr__(self, name, getattr(self, name).rstrip("/"))
        if not self.uploads_bucket:
            object.__setattr__(self, "uploads_bucket", f"trellis-uploads-{self.app_env}")
        if not self.export_bucket:
            object.__setattr__(self, "export_bucket", f"trellis-exports-{self.app_env}")
        unknown = set(self.upload_limits) - {"avatar", "booking_attachment", "provider_document"}
        if unknown:
            raise ValueError(f"UPLOAD_LIMITS names unknown purposes: {sorted(unknown)}")
        return self

    @property
    def cognito_region(self) -> str:
        """The user pool's region, from its id."""
        return self.cognito_user_pool_id.split("_", 1)[0]

    @property
    def issuer(self) -> str:
        """The issuer every token must carry (always set after validation)."""
        assert self.cognito_issuer is not None
        return self.cognito_issuer

    @property
    def jwks_url(self) -> str:
        assert self.cognito_jwks_url is not None
        return self.cognito_jwks_url

    @property
    def db_url(self) -> str:
        assert self.database_url is not None
        return self.database_url


def normalize_database_url(url: str) -> str:
    """Pin PostgreSQL URLs to psycopg2 (SQLAlchemy 2.1 would pick psycopg 3 for `postgresql://`)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url.removeprefix(prefix)
    return url


def _default_database_url(app_env: str) -> str | None:
    return {"development": DEVELOPMENT_DATABASE_URL, "test": TEST_DATABASE_URL}.get(app_env)


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The database URL alone, for tools (alembic) that need no Cognito settings."""
    environ = os.environ if environ is None else environ
    url = environ.get("DATABASE_URL") or _default_database_url(environ.get("APP_ENV", "production"))
    if not url:
        raise SettingsError("DATABASE_URL: required in production")
    return normalize_database_url(url)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment, or raise SettingsError naming every bad variable."""
    environ = os.environ if environ is None else environ
    names = {field.alias for field in Settings.model_fields.values() if field.alias}
    raw = {name: environ[name] for name in names if environ.get(name, "") != ""}
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
