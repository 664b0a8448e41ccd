"""Prepare orders the product's confirmation load consumes: a PENDING order in the shop's
database and an approved payment window on the Toss stand-in for each.

Run with the product's environment (bench/run.py does): every order is made by the shop's own
service (`payments.shop.catalog.create_order`), then its window is finished on the running
stand-in over HTTP (`POST /sandbox/api/sessions`, scenario approve), and the success redirect's
path (`/checkout/success?paymentType=NORMAL&orderId=…&paymentKey=…&amount=…`) is written one per
line. The confirm itself is left to the load: each path confirms one payment.

    python bench/prepare_orders.py --count 2000 --shop http://127.0.0.1:8000 \\
        --standin http://127.0.0.1:8787 --out paths.txt

The stand-in accepts a window's confirmation for 10 minutes: prepare right before the run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402
from standin import Order, open_windows  # noqa: E402

from payments import create_app  # noqa: E402
from payments.access import new_customer_key  # noqa: E402
from payments.core.models import Product  # noqa: E402
from payments.extensions import db  # noqa: E402
from payments.shop.catalog import Buyer, create_order  # noqa: E402

BUYER = Buyer(
    name="김벤치",
    email="bench@example.com",
    phone="01012345678",
    postcode="06236",
    address="서울특별시 강남구 테헤란로 1",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--shop", required=True, help="the shop's origin (success URL)")
    parser.add_argument("--standin", required=True, help="the Toss stand-in's origin")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=6)
    args = parser.parse_args()

    app = create_app()
    logging.getLogger().setLevel(logging.WARNING)  # one "order created" line each is noise here
    with app.app_context():
        products = list(
            db.session.scalars(
                select(Product.id).where(Product.active.is_(True)).order_by(Product.id)
            )
        )
    if not products:
        raise SystemExit("no products: run `flask seed` first")

    def make(i: int) -> Order:
        # One or two catalog lines, so orders look like a shopper's.
        cart = {str(products[i % len(products)]): 1 + i % 2}
        if i % 3 == 0:
            cart[str(products[(i + 3) % len(products)])] = 1
        with app.app_context():
            order = create_order(cart, new_customer_key(), BUYER)
            made = Order(order.order_id, order.amount, order.order_name, order.customer_key)
            db.session.remove()
        return made

    # Threads: each order waits on the database and each window on the stand-in.
    with ThreadPoolExecutor(args.threads) as pool:
        orders = list(pool.map(make, range(args.count)))
    paths = open_windows(args.standin, orders, args.shop, threads=args.threads)
    Path(args.out).write_text("".join(p + "\n" for p in paths))
    print(len(paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
