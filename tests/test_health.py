"""Liveness and readiness."""

from __future__ import annotations

from flask.testing import FlaskClient

from payments import create_app


def test_liveness_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["database"] == "ok"


def test_readiness_fails_without_a_database() -> None:
    # Nothing listens on port 1: the database is unreachable.
    broken = create_app(
        {
            "APP_ENV": "testing",
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1",
            "TOSS_SANDBOX": "0",
            "TOSS_CLIENT_KEY": "test_gck_sandbox",
            "TOSS_SECRET_KEY": "test_gsk_sandbox",
        }
    )
    client = broken.test_client()
    assert client.get("/healthz").status_code == 200  # alive, just not ready
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json() == {"status": "unavailable", "database": "unreachable"}
