"""A `requests` transport adapter that hands requests to a WSGI app in this process.

A shop running the sandbox in its own process reaches it through the very same TossClient code
it uses for Toss, and the sandbox's webhooks reach the shop, without a socket: under a single
sync gunicorn worker, calling our own port would deadlock. A read timeout is honoured like a
socket's (the app runs on a pool thread and the caller gets `requests.ReadTimeout` while the
work goes on), so slow answers behave as they do over HTTP.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import unquote, urlsplit

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


# Calls run on pool threads so the caller can stop waiting at its read timeout. The pool is
# large because a slow call must never make another wait for a thread.
_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="wsgi-transport")


def _call_with_timeout(
    call: Callable[[], bytes], seconds: float, request: PreparedRequest
) -> bytes:
    # Another thread has no Flask context of ours: the app pushes its own, as under a server.
    future = _POOL.submit(call)
    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        raise ReadTimeout(f"in-process read timed out after {seconds} s", request=request) from None


def _headers(pairs: Iterable[tuple[str, str]]) -> Mapping[str, str]:
    return dict(pairs)


def _unquote_path(path: str) -> str:
    # WSGI wants PATH_INFO decoded and latin-1 encoded.
    return unquote(path).encode("utf-8").decode("latin-1")
