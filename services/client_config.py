"""What a mobile app needs to reach this deployment, from the settings: no hand-copying.

The user pool, its region and the app client an app signs in with; where the API and the
realtime service are; what each kind of upload may be. `amplify_outputs` gives the same in
the shape of Amplify Gen 2's amplify_outputs.json, so Amplify's Auth libraries (Swift,
Android, Flutter, JS) sign in to Trellis's pool with `Amplify.configure(outputs)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.base.settings import Settings
from services.uploads import UploadLimit

# The amplify_outputs.json schema version whose `auth` section this fills (Amplify Gen 2's
# client-config schema; its libraries read 1.x).
AMPLIFY_OUTPUTS_VERSION = "1.4"


@dataclass(frozen=True, slots=True)
class UploadRule:
    max_bytes: int
    content_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClientConfig:
    region: str
    user_pool_id: str
    app_client_id: str
    api_base_url: str
    realtime_url: str | None
    uploads: dict[str, UploadRule]


def client_config(
    settings: Settings, *, api_base_url: str, upload_limits: Mapping[str, UploadLimit]
) -> ClientConfig:
    """`api_base_url`: API_PUBLIC_URL, or what the caller knows better (the request's own
    URL for the endpoint, an option of the command)."""
    return ClientConfig(
        # The pool's region (from its id), which may differ from AWS_REGION's S3 and SNS.
        region=settings.cognito_region,
        user_pool_id=settings.cognito_user_pool_id,
        # The first of COGNITO_APP_CLIENT_IDS is the apps' client (others: tools, dashboard).
        app_client_id=settings.cognito_app_client_ids[0],
        api_base_url=api_base_url.rstrip("/"),
        realtime_url=settings.realtime_public_url,
        uploads={
            purpose: UploadRule(limit.max_bytes, tuple(sorted(limit.content_types)))
            for purpose, limit in sorted(upload_limits.items())
        },
    )


def amplify_auth(config: ClientConfig) -> dict[str, str]:
    """amplify_outputs.json's `auth` section: the three members its schema requires. No
    identity pool: the apps reach AWS only through Trellis (presigned uploads)."""
    return {
        "aws_region": config.region,
        "user_pool_id": config.user_pool_id,
        "user_pool_client_id": config.app_client_id,
    }


def amplify_outputs(config: ClientConfig) -> dict[str, Any]:
    """A whole amplify_outputs.json: `auth`, and Trellis's own values under `custom` (the
    schema allows no other top-level member)."""
    return {
        "version": AMPLIFY_OUTPUTS_VERSION,
        "auth": amplify_auth(config),
        "custom": {
            "trellis": {
                "api_base_url": config.api_base_url,
                "realtime_url": config.realtime_url,
                "uploads": {
                    purpose: {
                        "max_bytes": rule.max_bytes,
                        "content_types": list(rule.content_types),
                    }
                    for purpose, rule in config.uploads.items()
                },
            }
        },
    }
