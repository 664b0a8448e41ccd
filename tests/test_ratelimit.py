"""Rate limits: the abused endpoints answer 429 in Korean; instances share counters in Redis;
the client IP comes from a trusted proxy only."""

from __future__ import annotations

import json
import logging
import os
import uuid
from typing import Any

import pytest
from flask import Flask

from tests.helpers import make_app

REDIS = "redis://127.0.0.1:6379/15"


def limited_app(database_url: str, **overrides: Any) -> Flask:
    return make_app(database_url, RATELIMIT_ENABLED=True, **overrides)


@pytest.mark.parametrize(
    ("path", "kwargs", "config"),
    [
        ("/api/payment/verify", {"json": {}}, {"RATELIMIT_CONFIRM": "3 per minute"}),
        ("/api/payment/confirm", {"json": {}}, {"RATELIMIT_CONFIRM": "3 per minute"}),
        ("/checkout/success", {}, {"RATELIMIT_CONFIRM": "3 per minute"}),
        ("/api/payment/webhook", {"data": "{}", "content_type": "application/json"},
         {"RATELIMIT_WEBHOOK": "3 per minute"}),
        ("/cart", {"data": {"product_id": "x"}}, {"RATELIMIT_SHOP": "3 per minute"}),
        ("/orders", {}, {"RATELIMIT_SHOP": "3 per minute"}),
    ],
)  # fmt: skip
def test_each_abused_endpoint_is_limited(
    database_url: str, path: str, kwargs: dict[str, Any], config: dict[str, str]
) -> None:
    app = limited_app(database_url, **config)
    client = app.test_client()
    method = client.get if path == "/checkout/success" else client.post
    statuses = [method(path, **kwargs).status_code for _ in range(4)]
    assert all(s != 429 for s in statuses[:3])
    assert statuses[3] == 429
    last = method(path, **kwargs)
    text = last.get_data(as_text=True)
    assert "요청이 너무 많습니다" in text
    if path.startswith("/api/"):
        assert last.get_json()["code"] == "TOO_MANY_REQUESTS"


def test_limits_are_per_client(database_url: str) -> None:
    app = limited_app(database_url, RATELIMIT_CONFIRM="2 per minute")
    client = app.test_client()
    for _ in range(3):
        client.post("/api/payment/verify", json={}, environ_base={"REMOTE_ADDR": "198.51.100.1"})
    blocked = client.post(
        "/api/payment/verify", json={}, environ_base={"REMOTE_ADDR": "198.51.100.1"}
    )
    other = client.post(
        "/api/payment/verify", json={}, environ_base={"REMOTE_ADDR": "198.51.100.2"}
    )
    assert blocked.status_code == 429
    assert other.status_code == 400


def test_forwarded_for_is_ignored_without_a_trusted_proxy(database_url: str) -> None:
    """Else a client could pick a fresh X-Forwarded-For per request and never be limited."""
    app = limited_app(database_url, RATELIMIT_CONFIRM="2 per minute")
    client = app.test_client()
    statuses = [
        client.post("/api/payment/verify", json={},
                    headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
        for i in range(3)
    ]  # fmt: skip
    assert statuses[-1] == 429


def test_behind_one_trusted_proxy_the_client_ip_counts(database_url: str) -> None:
    app = limited_app(database_url, RATELIMIT_CONFIRM="2 per minute", TRUSTED_PROXY_COUNT="1")
    client = app.test_client()

    def via_proxy(client_ip: str) -> int:
        return client.post(
            "/api/payment/verify", json={}, headers={"X-Forwarded-For": client_ip},
            environ_base={"REMOTE_ADDR": "10.0.0.5"},  # the proxy
        ).status_code  # fmt: skip

    assert [via_proxy("203.0.113.7") for _ in range(3)][-1] == 429
    assert via_proxy("203.0.113.8") == 400  # another shopper behind the same proxy


@pytest.fixture
def redis_prefix() -> str:
    try:
        import redis

        redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except Exception:  # noqa: BLE001 — any failure means no Redis here
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    return f"t{uuid.uuid4().hex[:10]}"


def test_instances_share_counters_in_redis(database_url: str, redis_prefix: str) -> None:
    config = {"REDIS_URL": REDIS, "RATELIMIT_KEY_PREFIX": redis_prefix,
              "RATELIMIT_WEBHOOK": "4 per minute"}  # fmt: skip
    first, second = limited_app(database_url, **config), limited_app(database_url, **config)
    body = {"data": json.dumps({"eventType": "x"}), "content_type": "application/json"}
    a, b = first.test_client(), second.test_client()
    statuses = [
        (a if i % 2 == 0 else b).post("/api/payment/webhook", **body).status_code for i in range(5)
    ]
    assert statuses[:4] == [200] * 4
    assert statuses[4] == 429  # the fifth, whichever instance gets it


# -- several workers -------------------------------------------------------------------------------


def test_development_warns_when_several_workers_count_alone(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Production refuses this (test_config.py, test_gunicorn.py); development only warns."""
    caplog.set_level(logging.INFO)
    limited_app(database_url, APP_ENV="development", WEB_CONCURRENCY="4")

    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
        and r.name == "payments.ops.ratelimit"
    ]  # fmt: skip
    assert len(warnings) == 1
    assert "WEB_CONCURRENCY=4" in warnings[0]
    assert "REDIS_URL" in warnings[0]


def test_one_worker_counting_in_memory_is_not_warned_about(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    limited_app(database_url, APP_ENV="development")

    assert not [r for r in caplog.records if r.name == "payments.ops.ratelimit"]


def test_falling_back_from_an_unreachable_store_is_logged(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: each worker keeps limiting alone (in_memory_fallback_enabled), and the log
    says so at start and when it happens; the store's password never reaches it."""
    caplog.set_level(logging.INFO)
    # Nothing listens on port 1.
    app = limited_app(
        database_url, REDIS_URL="redis://:hunter2pw@127.0.0.1:1/0", RATELIMIT_CONFIRM="2 per minute"
    )
    started = [r.getMessage() for r in caplog.records if r.name == "payments.ops.ratelimit"]
    assert len(started) == 1
    assert "redis://127.0.0.1:1/0" in started[0]
    assert "falls back" in started[0]

    client = app.test_client()
    statuses = [client.post("/api/payment/verify", json={}).status_code for _ in range(3)]

    assert statuses == [400, 400, 429]  # still limited, in this process's memory
    fell_back = [r for r in caplog.records if "falling back to in-memory" in r.getMessage()]
    assert fell_back
    assert fell_back[0].levelno == logging.WARNING
    assert "hunter2pw" not in caplog.text
