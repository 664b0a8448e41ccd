"""Prepare orders a benchmark can confirm: a PENDING order and an approved sandbox window each.

Run with the product's environment (bench/run.py does): for every order it calls the shop's own
service (`payments.shop.catalog.create_order`) and the sandbox's `POST /sandbox/api/sessions`
with scenario "approve" (in-process, `payments.sandbox.testing.SandboxDriver`), and writes the
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
from payments.access import new_customer_key  # noqa: E402
from payments.core.models import Product  # noqa: E402
from payments.extensions import db  # noqa: E402
from payments.sandbox.testing import SandboxDriver  # noqa: E402
from payments.shop.catalog import create_order  # noqa: E402


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
    toss = SandboxDriver.in_process(app.test_client(), client_key=app.config["TOSS_CLIENT_KEY"])
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
            window = toss.open_window(
                order.order_id,
                order.amount,
                scenario=args.scenario,
                order_name=order.order_name,
                success_url=args.base + "/checkout/success",
                fail_url=args.base + "/checkout/fail",
                customerKey=order.customer_key,
            )
            redirect = window.redirect_url
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
