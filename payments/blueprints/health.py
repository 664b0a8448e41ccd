"""Health endpoints for load balancers and orchestrators."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from ..extensions import db

bp = Blueprint("health", __name__)


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
