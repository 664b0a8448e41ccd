"""Operations endpoints: liveness and readiness for load balancers, /metrics for Prometheus."""

from __future__ import annotations

import hmac
import os

from flask import Blueprint, Response, abort, current_app, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..access import is_operator
from ..extensions import db

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def liveness() -> Response:
    """The process answers: nothing else is checked, so a slow database never restarts it."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readiness() -> tuple[Response, int]:
    """Ready for traffic when the database answers; 503 (and out of rotation) otherwise."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition: for a bearer METRICS_TOKEN, an operator, or a direct loopback
    scraper (not one relayed by a local reverse proxy, which would expose it to everyone)."""
    token = current_app.config.get("METRICS_TOKEN")
    given = request.headers.get("Authorization", "")
    direct_local = request.remote_addr in ("127.0.0.1", "::1") and not (
        request.headers.get("X-Forwarded-For") or request.headers.get("Forwarded")
    )
    allowed = (
        (bool(token) and hmac.compare_digest(given, f"Bearer {token}"))
        or is_operator()
        or (direct_local and not token)
    )
    if not allowed:
        abort(403)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
