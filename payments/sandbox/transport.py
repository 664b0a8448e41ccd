"""A `requests` transport adapter that hands requests to a WSGI app in this process.

The app reaches its embedded sandbox through the very same TossClient code it uses for Toss,
without a socket: under a single sync gunicorn worker, calling our own port would deadlock.
A read timeout is honoured like a socket's (the app runs in a helper thread and the caller gets
`requests.ReadTimeout` while the work goes on), so slow answers behave as they do over HTTP.
"""

from __future__ import annotations

import io
import os
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from requests import PreparedRequest, ReadTimeout, Response
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WSGITransport(BaseAdapter):
    """Mount on a `requests.Session` for an origin: its requests go to `app`, in-process."""

    def __init__(self, app: WSGIApp) -> None:
        super().__init__()
        self.app = app

    def send(  # type: ignore[override]
        self, request: PreparedRequest, stream: bool = False, timeout: Any = None, **_: Any
    ) -> Response:
        url = urlsplit(request.url or "")
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method or "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": _unquote_path(url.path),
            "RAW_URI": url.path + (f"?{url.query}" if url.query else ""),
            "QUERY_STRING": url.query,
            "SERVER_NAME": url.hostname or "localhost",
            "SERVER_PORT": str(url.port or (443 if url.scheme == "https" else 80)),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": url.scheme or "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)),
        }
        for name, value in request.headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif key != "CONTENT_LENGTH":
                environ[f"HTTP_{key}"] = value

        status_headers: dict[str, Any] = {}

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            status_headers["status"] = status
            status_headers["headers"] = headers
            return lambda _chunk: None

        def call() -> bytes:
            chunks = self.app(environ, start_response)
            try:
                return b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close:
                    close()

        read_timeout = _read_timeout(timeout)
        if read_timeout is None:
            content = call()
        else:
            content = _call_with_timeout(call, read_timeout, request)

        resp = Response()
        resp.status_code = int(status_headers["status"].split(" ", 1)[0])
        resp.reason = (
            status_headers["status"].split(" ", 1)[1] if " " in status_headers["status"] else ""
        )
        resp.headers = CaseInsensitiveDict(_headers(status_headers["headers"]))
        resp._content = content
        resp.url = request.url or ""
        resp.request = request
        resp.encoding = "utf-8"
        resp.raw = io.BytesIO(content)
        return resp

    def close(self) -> None:
        pass


def _read_timeout(timeout: Any) -> float | None:
    if isinstance(timeout, tuple):
        timeout = timeout[1] if len(timeout) > 1 else None
    return float(timeout) if timeout is not None else None


def _call_with_timeout(
    call: Callable[[], bytes], seconds: float, request: PreparedRequest
) -> bytes:
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["content"] = call()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc
        finally:
            done.set()

    # Another thread has no Flask context of ours: the app pushes its own, as under a server.
    _RUNNERS.start(run)
    if not done.wait(seconds):
        raise ReadTimeout(f"in-process read timed out after {seconds} s", request=request)
    if "error" in box:
        raise box["error"]
    content: bytes = box["content"]
    return content


class _Runners:
    """Daemon threads for in-process calls, kept for reuse: a call starts at once, on an idle
    thread or a new one (never queued behind a slow call, as with a thread per call), without
    creating a thread per call (a few percent of a confirmation's CPU under load, bench/run.py).
    """

    def __init__(self, keep: int = 16) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []
        # A forked child (gunicorn --preload) has none of the parent's threads.
        os.register_at_fork(after_in_child=self._idle.clear)

    def start(self, work: Callable[[], None]) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(
                target=self._serve, args=(inbox,), name="wsgi-transport", daemon=True
            ).start()
        inbox.put(work)

    def _serve(self, inbox: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            inbox.get()()  # `work` catches everything itself
            with self._lock:
                if len(self._idle) >= self._keep:
                    return
                self._idle.append(inbox)


_RUNNERS = _Runners()


def _headers(pairs: Iterable[tuple[str, str]]) -> Mapping[str, str]:
    return dict(pairs)


def _unquote_path(path: str) -> str:
    from urllib.parse import unquote

    # WSGI wants PATH_INFO decoded and latin-1 encoded.
    return unquote(path).encode("utf-8").decode("latin-1")
