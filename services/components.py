"""The composition root: builds every long-lived object once from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.auth import JwksCache, TokenVerifier
from services.aws.cognito import CognitoGroups, GroupDirectory
from services.aws.jwks import HttpJwksFetcher, JwksFetcher
from services.db import build_engine, session_factory
from services.settings import Settings


@dataclass
class Components:
    """What a running Trellis process holds: settings, database and token verifier."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    verifier: TokenVerifier
    groups: GroupDirectory


def build_components(
    settings: Settings,
    *,
    jwks_fetcher: JwksFetcher | None = None,
    groups: GroupDirectory | None = None,
) -> Components:
    """Build everything lazily: no connection, JWKS fetch or AWS client until first use."""
    engine = build_engine(settings)
    fetcher = jwks_fetcher or HttpJwksFetcher(
        settings.jwks_url, timeout_seconds=settings.jwks_timeout_seconds
    )
    verifier = TokenVerifier(
        keys=JwksCache(fetcher),
        issuer=settings.issuer,
        client_ids=settings.cognito_app_client_ids,
        token_use=settings.cognito_token_use,
        leeway_seconds=settings.token_leeway_seconds,
    )
    return Components(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        verifier=verifier,
        groups=groups
        or CognitoGroups(user_pool_id=settings.cognito_user_pool_id, region=settings.aws_region),
    )
