"""The in-process transport's helper threads: reused, never queued behind a slow call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from payments.sandbox.transport import WSGITransport, _Runners


def test_a_runner_thread_is_reused_for_the_next_call() -> None:
    runners = _Runners(keep=4)
    seen: list[int] = []
    for _ in range(5):
        done = threading.Event()

        def work(done: threading.Event = done) -> None:
            seen.append(threading.get_ident())
            done.set()

        runners.start(work)
        assert done.wait(5)
        # The thread files itself as idle just after `work`.
        assert eventually(lambda: bool(runners._idle))
    assert len(set(seen)) == 1


def test_a_call_never_waits_behind_a_slow_one() -> None:
    runners = _Runners(keep=1)
    release, slow_started, quick_done = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        slow_started.set()
        release.wait(10)

    runners.start(slow)
    assert slow_started.wait(5)
    runners.start(quick_done.set)  # no idle thread: a new one starts
    assert quick_done.wait(5)
    release.set()


def test_idle_threads_beyond_keep_end() -> None:
    runners = _Runners(keep=1)
    release = threading.Event()
    started = [threading.Event() for _ in range(3)]
    finished: list[threading.Thread] = []

    def work(ev: threading.Event) -> None:
        ev.set()
        release.wait(10)
        finished.append(threading.current_thread())

    for ev in started:
        runners.start(lambda ev=ev: work(ev))
    assert all(ev.wait(5) for ev in started)
    assert len(runners._idle) == 0  # three calls at once: three threads
    release.set()
    # One stays for the next call; the others end once they find it there.
    assert eventually(lambda: len(finished) == 3 and sum(t.is_alive() for t in finished) == 1)
    assert len(runners._idle) == 1


def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _session(app: Any) -> requests.Session:
    session = requests.Session()
    session.mount("http://inproc.test", WSGITransport(app))
    return session


def test_timeouts_and_errors_come_back_to_the_caller() -> None:
    release = threading.Event()

    def slow_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"late"]

    def broken_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise LookupError("broken")

    def ok_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("201 Created", [("X-Path", environ["PATH_INFO"])])
        return [b"made"]

    with pytest.raises(requests.ReadTimeout):
        _session(slow_app).get("http://inproc.test/slow", timeout=(1, 0.1))
    release.set()
    with pytest.raises(LookupError):
        _session(broken_app).get("http://inproc.test/x", timeout=(1, 5))
    resp = _session(ok_app).post("http://inproc.test/made", data=b"x", timeout=(1, 5))
    assert (resp.status_code, resp.content, resp.headers["X-Path"]) == (201, b"made", "/made")
