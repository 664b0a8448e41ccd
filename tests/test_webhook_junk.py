"""Junk webhooks must not starve real ones: an event naming nothing of ours costs no Toss
lookup, one lookup settles every pending event of a payment, and events about this shop's own
payments are claimed first (lanes set by the inbox).

Toss is faked with `responses`; every lookup the worker makes is counted.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import responses
from flask import Flask
from sqlalchemy import select

from payments.core.models import (
    LANE_NOT_OURS,
    LANE_OUR_ORDER,
    LANE_OWN_PAYMENT,
    Order,
    WebhookEvent,
)
from payments.extensions import db
from payments.webhooks.worker import claim, process, run_once
from tests.helpers import CONFIRM_URL, TOSS, fixture, get_order

HOOK = "/api/payment/webhook"
VA_PK = "tviva20261122130102Def34"
VA_SECRET = "ps_Wd46qopOB89gRbalbP0aVZmM75y0"
OTHER_PK = "tviva20261122131500Zzz99"


# -- building webhooks and Toss answers -----------------------------------------------------


def va_payment(order: Order, status: str, payment_key: str = VA_PK) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(fixture("toss/payment_waiting_for_deposit.json"))
    body.update(
        paymentKey=payment_key,
        orderId=order.order_id,
        status=status,
        totalAmount=order.amount,
        balanceAmount=order.amount,
        secret=VA_SECRET,
        approvedAt="2026-11-22T13:05:00+09:00" if status == "DONE" else None,
    )
    return body


def status_changed(order_id: str, payment_key: str, status: str = "DONE", n: int = 0) -> bytes:
    """A PAYMENT_STATUS_CHANGED body; `n` makes otherwise equal bodies distinct."""
    body = fixture("webhooks/payment_status_changed_done.json")
    body["createdAt"] = f"2026-11-22T12:19:{n % 60:02d}.{n:06d}"
    body["data"].update(orderId=order_id, paymentKey=payment_key, status=status)
    return json.dumps(body).encode()


def deposit_callback(order_id: str, secret: str) -> bytes:
    body = fixture("webhooks/deposit_callback.json")
    body.update(orderId=order_id, secret=secret)
    return json.dumps(body).encode()


def post(app: Flask, raw: bytes, transmission_id: str) -> None:
    resp = app.test_client().post(
        HOOK,
        data=raw,
        content_type="application/json",
        headers={"tosspayments-webhook-transmission-id": transmission_id},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)


def junk(app: Flask, count: int, start: int = 0) -> None:
    """Status changes naming orders and payments this shop never had."""
    for i in range(start, start + count):
        post(app, status_changed(f"junk-order-{i:06d}", f"tjunk{i:06d}"), f"whtrans_junk_{i}")


def lookup(payment_key: str) -> str:
    return f"{TOSS}/v1/payments/{payment_key}"


def lookups(toss: responses.RequestsMock) -> list[str]:
    return [c.request.url or "" for c in toss.calls if c.request.method == "GET"]


# -- reading and driving --------------------------------------------------------------------


def events(app: Flask) -> list[WebhookEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))
        db.session.expunge_all()
        return rows


def work(app: Flask, limit: int = 10) -> int:
    total = 0
    with app.app_context():
        while handled := run_once("test-worker", limit):
            total += handled
    return total


@pytest.fixture
def awaiting(
    app: Flask, toss: responses.RequestsMock, order_factory: Callable[..., Order]
) -> Order:
    """An order whose virtual account is issued (AWAITING_DEPOSIT), through the real confirm."""
    order = order_factory()
    toss.post(CONFIRM_URL, json=va_payment(order, "WAITING_FOR_DEPOSIT"))
    resp = app.test_client().post(
        "/api/payment/verify",
        json={"paymentKey": VA_PK, "orderId": order.order_id, "amount": order.amount},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert get_order(app, order.order_id).status == "AWAITING_DEPOSIT"
    toss.remove(responses.POST, CONFIRM_URL)
    toss.calls.reset()
    return order


# -- (a) nothing of ours: no lookup ---------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        {"orderId": "junk-order-000001", "paymentKey": "tjunk000001"},
        {"orderId": None, "paymentKey": "tjunk000002"},
        {"orderId": 12345, "paymentKey": "tjunk000003"},
    ],
    ids=["unknown-order-and-key", "no-order-id", "order-id-not-a-string"],
)
def test_status_change_naming_nothing_of_ours_is_ignored_without_asking_toss(
    app: Flask, toss: responses.RequestsMock, awaiting: Order, shape: dict[str, Any]
) -> None:
    body = json.loads(status_changed("placeholder", "placeholder"))
    body["data"].update(shape)
    post(app, json.dumps(body).encode(), "whtrans_junk_shape")

    work(app)

    assert lookups(toss) == []
    (event,) = events(app)
    assert event.status == "IGNORED"
    assert "no order of ours" in (event.result or "")
    assert event.lane == LANE_NOT_OURS
    assert get_order(app, awaiting.order_id).status == "AWAITING_DEPOSIT"


def test_a_flood_of_junk_costs_no_toss_lookup(
    app: Flask, toss: responses.RequestsMock, awaiting: Order
) -> None:
    junk(app, 50)

    assert work(app) == 50

    assert lookups(toss) == []
    assert {(e.status, e.lane) for e in events(app)} == {("IGNORED", LANE_NOT_OURS)}


def test_another_window_of_our_order_is_still_checked_with_toss(
    app: Flask, toss: responses.RequestsMock, awaiting: Order
) -> None:
    """Another checkout window's payment carries our orderId and a key we never saw: only
    Toss can say what it is, so it is looked up (and, being another window's, moves nothing)."""
    toss.get(lookup(OTHER_PK), json=va_payment(awaiting, "EXPIRED", OTHER_PK))
    post(app, status_changed(awaiting.order_id, OTHER_PK, "EXPIRED"), "whtrans_other_window")

    work(app)

    assert lookups(toss) == [lookup(OTHER_PK)]
    (event,) = events(app)
    assert (event.status, event.lane) == ("DONE", LANE_OUR_ORDER)
    assert get_order(app, awaiting.order_id).status == "AWAITING_DEPOSIT"


def test_a_known_payment_key_under_a_made_up_order_id_is_still_checked_with_toss(
    app: Flask, toss: responses.RequestsMock, awaiting: Order
) -> None:
    """The body is only a hint: a paymentKey of ours is enough to ask Toss, whose answer names
    the real order."""
    toss.get(lookup(VA_PK), json=va_payment(awaiting, "DONE"))
    post(app, status_changed("made-up-order-id", VA_PK), "whtrans_made_up_order")

    work(app)

    assert lookups(toss) == [lookup(VA_PK)]
    assert get_order(app, awaiting.order_id).status == "PAID"


# -- (c) lanes: events of known orders first ------------------------------------------------


def test_real_event_queued_after_junk_is_processed_first(
    app: Flask, toss: responses.RequestsMock, awaiting: Order
) -> None:
    toss.get(lookup(VA_PK), json=va_payment(awaiting, "DONE"))
    junk(app, 30)
    post(app, status_changed(awaiting.order_id, VA_PK), "whtrans_the_real_deposit")

    with app.app_context():
        (first,) = claim("test-worker", limit=1)
        assert process(first, "test-worker") == "DONE"

    real = events(app)[-1]
    assert first == real.id
    assert (real.lane, real.status) == (LANE_OWN_PAYMENT, "DONE")
    assert get_order(app, awaiting.order_id).status == "PAID"
    assert lookups(toss) == [lookup(VA_PK)]
    assert [e.status for e in events(app)[:-1]] == ["PENDING"] * 30


def test_inbox_sets_the_lane_from_what_the_event_names(
    app: Flask, toss: responses.RequestsMock, awaiting: Order
) -> None:
    post(app, status_changed(awaiting.order_id, VA_PK), "t1")
    post(app, status_changed(awaiting.order_id, OTHER_PK), "t2")
    post(app, status_changed("made-up-order-id", VA_PK), "t3")
    post(app, status_changed("made-up-order-id", "tjunk0001"), "t4")
    post(app, deposit_callback(awaiting.order_id, VA_SECRET), "t5")
    post(app, deposit_callback(awaiting.order_id, "ps_not_the_secret"), "t6")
    post(app, deposit_callback("made-up-order-id", VA_SECRET), "t7")
    post(app, json.dumps({"eventType": "SOMETHING_ELSE", "data": {}}).encode(), "t8")

    assert [e.lane for e in events(app)] == [
        LANE_OWN_PAYMENT,
        LANE_OUR_ORDER,
        LANE_OUR_ORDER,
        LANE_NOT_OURS,
        LANE_OWN_PAYMENT,
        LANE_OUR_ORDER,
        LANE_NOT_OURS,
        LANE_NOT_OURS,
    ]
    assert lookups(toss) == []


def test_claim_takes_lane_by_lane_then_oldest_first(
    app: Flask, toss: responses.RequestsMock, awaiting: Order
) -> None:
    junk(app, 3)
    post(app, status_changed(awaiting.order_id, OTHER_PK), "whtrans_other")
    junk(app, 3, start=3)
    post(app, deposit_callback(awaiting.order_id, VA_SECRET), "whtrans_deposit")
    post(app, status_changed(awaiting.order_id, VA_PK), "whtrans_own")
    by_id = {e.id: e.lane for e in events(app)}

    with app.app_context():
        claimed = claim("test-worker", limit=len(by_id))

    assert [by_id[i] for i in claimed] == [LANE_OWN_PAYMENT] * 2 + [LANE_OUR_ORDER] + [
        LANE_NOT_OURS
    ] * 6
    assert claimed == sorted(claimed, key=lambda i: (by_id[i], i))


# -- (b) coalescing: one lookup per payment -------------------------------------------------


@pytest.mark.parametrize("limit", [1, 10], ids=["one-per-batch", "all-in-one-batch"])
def test_duplicates_of_one_payment_cost_one_lookup(
    app: Flask, toss: responses.RequestsMock, awaiting: Order, limit: int
) -> None:
    toss.get(lookup(VA_PK), json=va_payment(awaiting, "DONE"))
    for n in range(6):
        post(app, status_changed(awaiting.order_id, VA_PK, n=n), f"whtrans_dup_{n}")

    work(app, limit)

    assert lookups(toss) == [lookup(VA_PK)]
    first, *rest = events(app)
    assert first.status == "DONE"
    assert "AWAITING_DEPOSIT → PAID" in (first.result or "")
    assert [(e.status, e.result) for e in rest] == [("DONE", f"coalesced into #{first.id}")] * 5
    assert get_order(app, awaiting.order_id).status == "PAID"


def test_a_payment_toss_does_not_know_is_asked_about_once(
    app: Flask, toss: responses.RequestsMock, awaiting: Order
) -> None:
    """A flood naming our order with one made-up paymentKey: one lookup, all rejected."""
    toss.get(lookup(OTHER_PK), status=404, json={"code": "NOT_FOUND_PAYMENT", "message": "없음"})
    for n in range(5):
        post(app, status_changed(awaiting.order_id, OTHER_PK, n=n), f"whtrans_forged_{n}")

    work(app)

    assert lookups(toss) == [lookup(OTHER_PK)]
    assert {e.status for e in events(app)} == {"REJECTED"}
    assert get_order(app, awaiting.order_id).status == "AWAITING_DEPOSIT"


def test_an_event_arriving_during_the_lookup_gets_a_lookup_of_its_own(
    app: Flask, toss: responses.RequestsMock, awaiting: Order
) -> None:
    """Toss's answer can only speak for events received before it was asked: a status change
    announced while the lookup is in flight may be newer than that answer."""
    answers = [va_payment(awaiting, "WAITING_FOR_DEPOSIT"), va_payment(awaiting, "DONE")]

    def toss_lookup(request: Any) -> tuple[int, dict[str, str], str]:
        answer = answers.pop(0)
        if answer["status"] == "WAITING_FOR_DEPOSIT":  # the deposit lands meanwhile
            post(app, status_changed(awaiting.order_id, VA_PK, n=2), "whtrans_during")
        return 200, {"Content-Type": "application/json"}, json.dumps(answer)

    toss.add_callback(responses.GET, lookup(VA_PK), callback=toss_lookup)
    post(app, status_changed(awaiting.order_id, VA_PK, "WAITING_FOR_DEPOSIT"), "whtrans_before")
    post(app, status_changed(awaiting.order_id, VA_PK, "WAITING_FOR_DEPOSIT", n=1), "whtrans_b2")

    work(app)

    assert lookups(toss) == [lookup(VA_PK)] * 2
    before, coalesced, during = events(app)
    assert coalesced.result == f"coalesced into #{before.id}"
    assert "AWAITING_DEPOSIT → PAID" in (during.result or "")
    assert get_order(app, awaiting.order_id).status == "PAID"
