"""`python -m payments.sandbox --port 8787`: run the sandbox alone (see the package docstring)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from werkzeug.serving import run_simple

from .standalone import create_sandbox_app


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve the stand-alone sandbox until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m payments.sandbox", description="Offline Toss Payments sandbox"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind [127.0.0.1]")
    parser.add_argument("--port", type=int, default=8787, help="port [8787]")
    parser.add_argument(
        "--db",
        default=os.path.join("instance", "toss-sandbox.sqlite3"),
        help="SQLite file holding the sandbox's state [instance/toss-sandbox.sqlite3]",
    )
    parser.add_argument("--webhook-url", help="where to POST webhooks (none if omitted)")
    parser.add_argument("--client-key", help="widget client key [test_gck_sandbox]")
    parser.add_argument("--secret-key", help="secret key [test_gsk_sandbox]")
    args = parser.parse_args(argv)

    config: dict[str, Any] = {
        "SQLALCHEMY_DATABASE_URI": "sqlite:///" + os.path.abspath(args.db),
        "SANDBOX_WEBHOOK_URL": args.webhook_url,
    }
    if args.client_key:
        config["TOSS_CLIENT_KEY"] = args.client_key
    if args.secret_key:
        config["TOSS_SECRET_KEY"] = args.secret_key
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_sandbox_app(config)
    print(
        f"Toss sandbox: API http://{args.host}:{args.port}/sandbox/v1 · widget "
        f"http://{args.host}:{args.port}/sandbox/widget/v2/standard · db {args.db}"
    )
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
