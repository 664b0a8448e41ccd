"""The in-process transport: a `requests` adapter that hands requests to a WSGI app in this
process and honours a read timeout like a socket."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from payments.sandbox.transport import WSGITransport

ORIGIN = "http://inproc.test"


def _session(app: Any) -> requests.Session:
    session = requests.Session()
    session.mount(ORIGIN, WSGITransport(app))
    return session


def test_a_read_timeout_raises_while_the_work_goes_on() -> None:
    """As over a socket: the caller gets requests.ReadTimeout, the app still finishes its work."""
    release, finished = threading.Event(), threading.Event()

    def slow_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        release.wait(10)
        finished.set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"late"]

    with pytest.raises(requests.ReadTimeout):
        _session(slow_app).get(f"{ORIGIN}/slow", timeout=(1, 0.1))
    assert not finished.is_set()
    release.set()
    assert finished.wait(5)  # the timed-out call was not abandoned half-way


def test_a_slow_call_does_not_block_another() -> None:
    """While one call is held, another through the same transport is answered."""
    release, slow_started = threading.Event(), threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            slow_started.set()
            release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    session = _session(app)
    answers: list[bytes] = []
    slow = threading.Thread(
        target=lambda: answers.append(session.get(f"{ORIGIN}/slow", timeout=(1, 10)).content)
    )
    slow.start()
    try:
        assert slow_started.wait(5)
        quick = session.get(f"{ORIGIN}/quick", timeout=(1, 5))
        assert quick.content == b"/quick"
        assert answers == []  # the slow one is still held
    finally:
        release.set()
        slow.join(10)
    assert answers == [b"/slow"]


def test_errors_and_answers_come_back_to_the_caller() -> None:
    """An exception in the app reaches the caller; status, headers, body and the path as the
    app saw it come back as a requests Response."""

    def broken_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise LookupError("broken")

    def ok_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response(
            "201 Created",
            [
                ("X-Path", environ["PATH_INFO"]),
                ("X-Query", environ["QUERY_STRING"]),
                ("X-Body", body.decode()),
            ],
        )
        return [b"made"]

    with pytest.raises(LookupError):
        _session(broken_app).get(f"{ORIGIN}/x", timeout=(1, 5))
    with pytest.raises(LookupError):
        _session(broken_app).get(f"{ORIGIN}/x")  # no timeout: run in the caller's thread
    resp = _session(ok_app).post(f"{ORIGIN}/made?a=1", data=b"x", timeout=(1, 5))
    assert (resp.status_code, resp.reason, resp.content) == (201, "Created", b"made")
    assert (resp.headers["X-Path"], resp.headers["X-Query"], resp.headers["X-Body"]) == (
        "/made",
        "a=1",
        "x",
    )
