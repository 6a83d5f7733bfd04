"""GET /v1/config and `flask --app application client-config`: the apps' configuration."""

from __future__ import annotations

import json

import click
from flask import Blueprint, Response, request
from flask.cli import with_appcontext

from api.context import components, public_base_url
from api.endpoint import endpoint
from api.responses import json_response
from api.schemas.client_config import AmplifyAuth, ClientConfig, UploadLimits, UploadRules
from services import client_config as config

bp = Blueprint("client_config", __name__, url_prefix="/v1")

# The same for every caller and changed only by a deployment: apps and CDNs may keep it a
# while, and revalidate with If-None-Match for a 304.
MAX_AGE_SECONDS = 300


def _schema(built: config.ClientConfig) -> ClientConfig:
    uploads = {
        purpose: UploadRules(max_bytes=rule.max_bytes, content_types=list(rule.content_types))
        for purpose, rule in built.uploads.items()
    }
    return ClientConfig(
        region=built.region,
        user_pool_id=built.user_pool_id,
        app_client_id=built.app_client_id,
        api_base_url=built.api_base_url,
        realtime_url=built.realtime_url,
        uploads=UploadLimits(**uploads),
        auth=AmplifyAuth(**config.amplify_auth(built)),
        amplify_outputs_version=config.AMPLIFY_OUTPUTS_VERSION,
    )


def _current(api_base_url: str) -> config.ClientConfig:
    built = components()
    return config.client_config(
        built.settings, api_base_url=api_base_url, upload_limits=built.upload_limits
    )


@bp.get("/config")
@endpoint(
    summary="Configuration for the apps",
    tags=("config",),
    auth=False,
    response=ClientConfig,
    cacheable=True,
)
def get_client_config() -> Response:
    """No token needed: the user pool and app client to sign in with (`auth` is
    amplify_outputs.json's section), the API's base URL (API_PUBLIC_URL, else this
    request's own), the realtime URL (null until there is one) and the upload limits.
    Cacheable: `Cache-Control: public, max-age=300` and an ETag (If-None-Match: 304)."""
    body = _schema(_current(public_base_url()))
    response = json_response(body)
    response.headers["Cache-Control"] = f"public, max-age={MAX_AGE_SECONDS}"
    response.add_etag()
    return response.make_conditional(request)


@click.command("client-config")
@click.option(
    "--amplify",
    is_flag=True,
    help="Print amplify_outputs.json (auth, and Trellis's values under custom) instead.",
)
@click.option("--api-base-url", help="The API's public base URL (default: API_PUBLIC_URL).")
@with_appcontext
def client_config_command(amplify: bool, api_base_url: str | None) -> None:
    """Print the apps' configuration as JSON: GET /v1/config's body, or with --amplify an
    amplify_outputs.json for Amplify's Auth libraries."""
    url = api_base_url or components().settings.api_public_url
    if not url:
        raise click.UsageError("set API_PUBLIC_URL or pass --api-base-url: the apps need it")
    built = _current(url)
    document = config.amplify_outputs(built) if amplify else _schema(built).model_dump(mode="json")
    click.echo(json.dumps(document, indent=2))
