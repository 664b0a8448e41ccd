"""Prepare orders a benchmark can confirm: a PENDING order and an approved sandbox window each.

Run with the product's environment (bench/run.py does): for every order it calls the shop's own
services (`payments.orders.create_order`) and what `POST /sandbox/api/sessions` does with
scenario "approve" (`parse_session_request` → `create_session` → `finish_session`), and writes the
path of the success redirect (`/checkout/success?paymentType=NORMAL&orderId=…&paymentKey=…&
amount=…`) one per line. The confirm itself is left to the load: each path confirms one payment.

    python bench/prepare_orders.py --count 2000 --base http://127.0.0.1:8000 --out paths.txt

`--scenario slow_confirm` instead makes the sandbox hold each confirm's answer for
SANDBOX_SLOW_CONFIRM_SECONDS (the payment is approved first), like a Toss that takes that long.

Sandbox windows must be confirmed within 10 minutes: prepare right before the run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402

from payments import create_app  # noqa: E402
from payments.extensions import db  # noqa: E402
from payments.models import Product  # noqa: E402
from payments.orders import create_order, new_customer_key  # noqa: E402
from payments.sandbox.service import (  # noqa: E402
    create_session,
    finish_session,
    parse_session_request,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument(
        "--base", required=True, help="the shop's origin, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--scenario", default="approve", choices=["approve", "slow_confirm"])
    args = parser.parse_args()

    app = create_app()
    logging.getLogger().setLevel(logging.WARNING)  # one "order created" line each is noise here
    deadline = time.monotonic() + args.max_seconds
    paths: list[str] = []
    with app.app_context():
        products = list(
            db.session.scalars(
                select(Product.id).where(Product.active.is_(True)).order_by(Product.id)
            )
        )
        if not products:
            raise SystemExit("no products: run `flask seed` first")
        for i in range(args.count):
            if time.monotonic() > deadline:
                break
            # One or two catalog lines, so orders look like a shopper's.
            cart = {str(products[i % len(products)]): 1 + i % 2}
            if i % 3 == 0:
                cart[str(products[(i + 3) % len(products)])] = 1
            order = create_order(cart, new_customer_key())
            req = parse_session_request(
                {
                    "clientKey": app.config["TOSS_CLIENT_KEY"],
                    "orderId": order.order_id,
                    "orderName": order.order_name,
                    "amount": order.amount,
                    "successUrl": args.base + "/checkout/success",
                    "failUrl": args.base + "/checkout/fail",
                    "customerKey": order.customer_key,
                    "scenario": args.scenario,
                }
            )
            redirect = finish_session(create_session(req, args.base), args.scenario)
            parts = urlsplit(redirect)
            if parts.path != "/checkout/success":
                raise SystemExit(f"the sandbox did not approve: {redirect}")
            paths.append(f"{parts.path}?{parts.query}")
            db.session.remove()
    Path(args.out).write_text("".join(p + "\n" for p in paths))
    print(len(paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
