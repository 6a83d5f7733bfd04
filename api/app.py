"""The Flask application factory."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from api import (
    account_pages,
    admin,
    analytics,
    availability,
    blocks,
    booking_process,
    bookings,
    changes,
    client_config,
    dashboard,
    data_exports,
    health,
    internal,
    me,
    media,
    providers,
    reports,
    sync,
)
from api.cli import register_cli
from api.context import register_context
from api.cors import register_cors
from api.endpoint import check_declarations
from api.errors import register_error_handlers
from api.json import OrjsonProvider
from api.limits import register_rate_limits
from api.openapi import register_docs
from api.request_log import configure_logging, register_request_log
from api.security import register_security_headers
from services.base.settings import Settings, load_settings
from services.components import Components, build_components


def create_app(settings: Settings | None = None, *, components: Components | None = None) -> Flask:
    """Build the app from settings (read from the environment when not given)."""
    if components is None:
        components = build_components(settings or load_settings())
    settings = components.settings
    configure_logging(settings.log_level)

    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, TRELLIS_ENV=settings.app_env)
    register_context(app, components)
    register_request_log(app)
    register_error_handlers(app)
    app.register_blueprint(health.bp)
    for blueprint in (
        me.bp,
        providers.bp,
        bookings.bp,
        booking_process.bp,
        availability.bp,
        blocks.bp,
        data_exports.bp,
        data_exports.files_bp,
        reports.bp,
        reports.admin_bp,
        media.bp,
        sync.bp,
        changes.bp,
        admin.bp,
        analytics.bp,
        client_config.bp,
        dashboard.bp,
        account_pages.bp,
    ):
        app.register_blueprint(blueprint)
    if settings.worker_tasks_enabled:  # worker tier only; absent (404) everywhere else
        app.register_blueprint(internal.bp)
    register_docs(app)
    register_cli(app)
    register_security_headers(app)
    register_cors(app, settings)
    check_declarations(app)
    register_rate_limits(app)  # last: it wraps the views registered above
    if settings.proxy_hops:
        # The client's address for rate limits and logs: the entry the load balancer added
        # (nginx appends the balancer's own after it). Leftmost entries are the client's word.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=1
        )
    return app
