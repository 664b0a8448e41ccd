"""E-mail to buyers: written to the outbox with the change it reports, sent by the worker over
SMTP to a real server started here (aiosmtpd), at most once per event, retried with backoff."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from sqlalchemy import select, update

from payments.admin.fulfilment import advance
from payments.admin.refunds import request_refund
from payments.config import ConfigError, load_config
from payments.core.clock import utcnow
from payments.core.errors import ServiceError
from payments.core.models import MailMessage, MailStatus, Order, OrderLine, Payment
from payments.core.states import FulfilmentStatus
from payments.extensions import db
from payments.mail import sender
from payments.mail.outbox import enqueue
from payments.sandbox.testing import SandboxDriver, new_order_id
from payments.webhooks.worker import run_once, work
from tests.helpers import Shopper, dispose, free_port, get_order, sandbox_app

BUYER = "buyer@example.kr"


class Inbox:
    """An SMTP server's handler: keeps what arrives; answers the queued refusals first."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        self.refusals: list[str] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refusals:
            return self.refusals.pop(0)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(message)
        self.recipients.append(list(envelope.rcpt_tos))
        self.arrived.set()
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def shop(database_url: str, smtp: tuple[Inbox, int]) -> Iterator[Flask]:
    """The shop with the sandbox mounted, sending through the test's SMTP server."""
    app = sandbox_app(
        database_url,
        MAIL_URL=f"smtp://127.0.0.1:{smtp[1]}",
        MAIL_FROM="토스 상점 <shop@example.kr>",
        PUBLIC_BASE_URL="https://shop.example.kr",
    )
    yield app
    dispose(app)


def ordered(app: Flask, shopper: Shopper, email: str | None = BUYER) -> tuple[str, int]:
    """An order of the buyer `email` as the shop stores it: (orderId, amount)."""
    order_id = new_order_id()
    with app.app_context():
        order = Order(
            order_id=order_id,
            order_name="메일 테스트 상품 외 1건",
            customer_key="cust_mail_test",
            amount=12_000,
            buyer_name="김토스",
            buyer_email=email,
        )
        order.lines.append(
            OrderLine(
                product_name="메일 테스트 상품", unit_price=6_000, quantity=2, line_total=12_000
            )
        )
        db.session.add(order)
        db.session.commit()
    return order_id, 12_000


def outbox(app: Flask) -> list[tuple[str, str, int]]:
    with app.app_context():
        rows = db.session.execute(
            select(MailMessage.kind, MailMessage.status, MailMessage.attempts).order_by(
                MailMessage.id
            )
        ).all()
        return [(kind, str(status), attempts) for kind, status, attempts in rows]


def drain(app: Flask, **kwargs: Any) -> int:
    with app.app_context():
        return sender.drain(**kwargs)


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def webhook_for(app: Flask, payment_key: str) -> None:
    """Toss's PAYMENT_STATUS_CHANGED hint for `payment_key`, then the webhook worker's turn."""
    client = app.test_client()
    body = {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": "2026-11-22T10:05:00.000000",
        "data": {"paymentKey": payment_key, "orderId": "x", "status": "DONE"},
    }
    resp = client.post(
        "/api/payment/webhook", data=json.dumps(body), content_type="application/json"
    )
    assert resp.status_code == 200
    with app.app_context():
        while run_once("test-worker"):
            pass


def test_virtual_account_issue_and_deposit_arrive_over_smtp(
    shop: Flask, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    shopper = Shopper(shop, shop.test_client())
    order_id, amount = ordered(shop, shopper)
    driver = SandboxDriver.in_process(shopper.client)
    window = driver.open_window(
        order_id,
        amount,
        scenario="virtual_account",
        success_url="http://localhost/checkout/success",
        fail_url="http://localhost/checkout/fail",
    )
    shopper.client.get(window.redirect_url.removeprefix("http://localhost"))
    order = get_order(shop, order_id)
    assert order.status == "AWAITING_DEPOSIT"
    # Written with the change, never sent inside the request.
    assert outbox(shop) == [("va_issued", "PENDING", 0)]
    assert inbox.received == []

    assert drain(shop) == 1
    assert outbox(shop) == [("va_issued", "SENT", 1)]
    (issued,) = inbox.received
    assert inbox.recipients == [[BUYER]]
    assert issued["To"] == BUYER
    assert "가상계좌가 발급되었습니다" in str(issued["Subject"])
    assert order_id in str(issued["Subject"])
    with shop.app_context():
        payment = db.session.scalars(select(Payment).where(Payment.order_pk == order.id)).one()
        db.session.expunge(payment)
    assert payment.va_account_number
    text = text_of(issued)
    assert payment.va_account_number in text
    assert f"{amount:,}원" in text
    assert "입금 기한:" in text
    assert "년" in text
    assert "김토스님" in text
    assert "https://shop.example.kr/orders/lookup" in text
    html = html_of(issued)
    assert payment.va_account_number in html
    assert "<table" in html

    assert driver.deposit(order_id).status == 200
    webhook_for(shop, payment.payment_key)
    assert get_order(shop, order_id).status == "PAID"
    assert inbox.received[1:] == []
    assert drain(shop) == 1
    deposit = inbox.received[1]
    assert "입금이 확인되어 결제가 완료되었습니다" in str(deposit["Subject"])
    assert f"{amount:,}원" in text_of(deposit)
    # Nothing more to send; a second drain sends nothing again.
    assert drain(shop) == 0
    assert [kind for kind, _, _ in outbox(shop)] == ["va_issued", "deposit"]
    assert len(inbox.received) == 2


def test_a_card_payment_mails_once_whichever_paths_apply_it(
    shop: Flask, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    shopper = Shopper(shop, shop.test_client())
    order_id, amount = ordered(shop, shopper)
    shopper.pay_in_sandbox(order_id, amount)
    payment_key = get_order(shop, order_id).payment_key
    assert payment_key
    # A refresh of the success URL, the webhook and its re-check: the same payment again.
    shopper.return_from_toss(order_id, payment_key, amount)
    webhook_for(shop, payment_key)
    assert outbox(shop) == [("paid", "PENDING", 0)]
    drain(shop)
    drain(shop)
    (paid,) = inbox.received
    assert "결제가 완료되었습니다" in str(paid["Subject"])
    assert "결제 수단: 카드" in text_of(paid)


def test_refunds_mail_each_cancel(shop: Flask, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    shopper = Shopper(shop, shop.test_client())
    order_id, amount = ordered(shop, shopper)
    shopper.pay_in_sandbox(order_id, amount)
    with shop.app_context():
        request_refund(order_id, 1000, "부분 환불", None, "admin")
    with shop.app_context():
        request_refund(order_id, None, "나머지 환불", None, "admin")
    assert [kind for kind, _, _ in outbox(shop)] == ["paid", "refund", "refund"]
    drain(shop)
    subjects = [str(m["Subject"]) for m in inbox.received]
    assert sum("환불이 처리되었습니다" in s for s in subjects) == 2
    first, second = (text_of(m) for m in inbox.received if "환불" in str(m["Subject"]))
    assert "1,000원이 환불되었습니다" in first
    assert f"남은 결제 금액: {amount - 1000:,}원" in first
    assert f"{amount - 1000:,}원이 환불되었습니다" in second
    assert "남은 결제 금액: 0원" in second


def test_a_refusing_server_is_retried_with_backoff_and_mails_once(
    shop: Flask, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    inbox.refusals = ["451 4.3.0 Try again later", "451 4.3.0 Try again later"]
    shopper = Shopper(shop, shop.test_client())
    order_id, amount = ordered(shop, shopper)
    shopper.pay_in_sandbox(order_id, amount)
    now = utcnow()

    drain(shop, now=now)
    assert inbox.received == []
    assert outbox(shop) == [("paid", "PENDING", 1)]
    with shop.app_context():
        row = db.session.scalars(select(MailMessage)).one()
        assert row.next_attempt_at == now + timedelta(seconds=sender.RETRY_DELAYS[0])
        assert row.last_error
        assert "451" in row.last_error
    # Not due yet: nothing is tried.
    assert drain(shop, now=now + timedelta(seconds=sender.RETRY_DELAYS[0] - 1)) == 0
    later = now + timedelta(seconds=sender.RETRY_DELAYS[0])
    drain(shop, now=later)
    assert outbox(shop) == [("paid", "PENDING", 2)]
    with shop.app_context():
        row = db.session.scalars(select(MailMessage)).one()
        # The wait grows with each refusal.
        assert row.next_attempt_at == later + timedelta(seconds=sender.RETRY_DELAYS[1])
    drain(shop, now=later + timedelta(seconds=sender.RETRY_DELAYS[1]))
    assert outbox(shop) == [("paid", "SENT", 3)]
    assert len(inbox.received) == 1
    drain(shop, now=later + timedelta(days=2))
    assert len(inbox.received) == 1


def test_a_permanent_refusal_parks_the_message(shop: Flask, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    inbox.refusals = ["550 5.1.1 No such mailbox"]
    shopper = Shopper(shop, shop.test_client())
    order_id, amount = ordered(shop, shopper)
    shopper.pay_in_sandbox(order_id, amount)
    drain(shop)
    assert outbox(shop) == [("paid", "FAILED", 1)]
    assert drain(shop, now=utcnow() + timedelta(days=3)) == 0
    assert inbox.received == []


def test_an_unreachable_server_is_retried_and_gives_up_after_the_last_delay(
    database_url: str,
) -> None:
    app = sandbox_app(database_url, MAIL_URL=f"smtp://127.0.0.1:{free_port()}", MAIL_FROM="a@b.kr")
    try:
        shopper = Shopper(app, app.test_client())
        order_id, amount = ordered(app, shopper)
        shopper.pay_in_sandbox(order_id, amount)
        now = utcnow()
        for delay in sender.RETRY_DELAYS:
            drain(app, now=now)
            assert outbox(app)[0][1] == "PENDING"
            now += timedelta(seconds=delay)
        drain(app, now=now)
        assert outbox(app) == [("paid", "FAILED", len(sender.RETRY_DELAYS) + 1)]
    finally:
        dispose(app)


def test_a_send_interrupted_before_it_was_marked_goes_out_again(
    shop: Flask, smtp: tuple[Inbox, int]
) -> None:
    """The documented double: a worker that died after handing the message over (SENDING, its
    lease run out) — the message is sent again once the lease has passed, and not before."""
    inbox, _ = smtp
    shopper = Shopper(shop, shop.test_client())
    order_id, amount = ordered(shop, shopper)
    shopper.pay_in_sandbox(order_id, amount)
    now = utcnow()
    with shop.app_context():
        db.session.execute(
            update(MailMessage).values(
                status=MailStatus.SENDING, attempts=1, locked_until=now + timedelta(seconds=60)
            )
        )
        db.session.commit()
    assert drain(shop, now=now) == 0
    assert drain(shop, now=now + timedelta(seconds=61)) == 1
    assert len(inbox.received) == 1
    assert outbox(shop) == [("paid", "SENT", 2)]


def test_the_worker_loop_sends_the_outbox(shop: Flask, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    shopper = Shopper(shop, shop.test_client())
    order_id, amount = ordered(shop, shopper)
    shopper.pay_in_sandbox(order_id, amount)
    stop = threading.Event()
    thread = threading.Thread(target=work, args=(shop, stop), kwargs={"poll": 0.05})
    thread.start()
    try:
        assert inbox.arrived.wait(20)
    finally:
        stop.set()
        thread.join(20)
    assert len(inbox.received) == 1
    assert outbox(shop) == [("paid", "SENT", 1)]


def test_worker_once_sends_the_outbox(shop: Flask, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    shopper = Shopper(shop, shop.test_client())
    order_id, amount = ordered(shop, shopper)
    shopper.pay_in_sandbox(order_id, amount)
    result = shop.test_cli_runner().invoke(args=["payments", "worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "1 e-mail(s)" in result.output
    assert inbox.arrived.wait(20)
    assert len(inbox.received) == 1
    assert outbox(shop) == [("paid", "SENT", 1)]


def test_no_buyer_e_mail_no_message(shop: Flask) -> None:
    shopper = Shopper(shop, shop.test_client())
    order_id, amount = ordered(shop, shopper, email=None)
    shopper.pay_in_sandbox(order_id, amount)
    assert get_order(shop, order_id).status == "PAID"
    assert outbox(shop) == []


def test_enqueue_is_idempotent_per_event(shop: Flask) -> None:
    shopper = Shopper(shop, shop.test_client())
    order_id, _ = ordered(shop, shopper)
    with shop.app_context():
        order = db.session.scalars(select(Order).where(Order.order_id == order_id)).one()
        assert enqueue(order, "shipped", ref="1")
        assert not enqueue(order, "shipped", ref="1")
        assert enqueue(order, "shipped", ref="2")
        db.session.commit()
        with pytest.raises(ValueError, match="unknown mail kind"):
            enqueue(order, "nonsense")
    assert [kind for kind, _, _ in outbox(shop)] == ["shipped", "shipped"]


# -- without a mail server -------------------------------------------------------------------------


def test_development_keeps_messages_and_lists_them(database_url: str) -> None:
    app = sandbox_app(database_url, MAIL_DEV_PAGE="1")
    try:
        shopper = Shopper(app, app.test_client())
        order_id, amount = ordered(app, shopper)
        shopper.pay_in_sandbox(order_id, amount)
        assert drain(app) == 1
        assert outbox(app) == [("paid", "KEPT", 0)]
        page = app.test_client().get("/dev/mail/")
        assert page.status_code == 200
        body = page.get_data(as_text=True)
        assert "결제가 완료되었습니다" in body
        assert BUYER in body
        with app.app_context():
            message_id = db.session.scalars(select(MailMessage.id)).one()
        html = app.test_client().get(f"/dev/mail/{message_id}.html")
        assert html.status_code == 200
        assert html.mimetype == "text/html"
        assert "결제가 완료되었습니다" in html.get_data(as_text=True)
        assert app.test_client().get("/dev/mail/99999999999.html").status_code == 404
    finally:
        dispose(app)


def test_the_development_page_is_hidden_unless_enabled(app: Flask) -> None:
    assert app.test_client().get("/dev/mail/").status_code == 404


def test_production_waits_for_a_mail_server(database_url: str) -> None:
    """Production never marks a message KEPT: it waits, PENDING, until a server is set."""
    app = sandbox_app(database_url)
    try:
        shopper = Shopper(app, app.test_client())
        order_id, amount = ordered(app, shopper)
        shopper.pay_in_sandbox(order_id, amount)
        app.config["APP_ENV"] = "production"
        assert drain(app) == 0
        assert outbox(app) == [("paid", "PENDING", 0)]
    finally:
        dispose(app)


# -- configuration ---------------------------------------------------------------------------------


def config(tmp_path: Path, **env: str) -> dict[str, Any]:
    return load_config(environ={"APP_ENV": "testing", **env}, instance_path=str(tmp_path))


def test_mail_url_and_smtp_variables(tmp_path: Path) -> None:
    cfg = config(
        tmp_path, MAIL_URL="smtp://shop%40x.kr:p%40ss@mail.example.kr:587", MAIL_FROM="a@x.kr"
    )
    assert cfg["MAIL_SMTP"] == {
        "host": "mail.example.kr",
        "port": 587,
        "user": "shop@x.kr",
        "password": "p@ss",
        "ssl": False,
        "starttls": True,  # a password never travels in clear by default
    }
    plain = config(tmp_path, MAIL_URL="smtp://127.0.0.1:2525?starttls=0", MAIL_FROM="a@x.kr")
    assert plain["MAIL_SMTP"]["starttls"] is False
    implicit = config(tmp_path, MAIL_URL="smtps://u:p@mail.example.kr", MAIL_FROM="a@x.kr")
    assert implicit["MAIL_SMTP"]["port"] == 465
    assert implicit["MAIL_SMTP"]["ssl"]
    smtp = config(
        tmp_path,
        SMTP_HOST="mail.example.kr",
        SMTP_PORT="2525",
        SMTP_USER="u",
        SMTP_PASSWORD="p",
        SMTP_STARTTLS="0",
        MAIL_FROM="상점 <a@x.kr>",
    )
    assert smtp["MAIL_SMTP"]["port"] == 2525
    assert smtp["MAIL_SMTP"]["starttls"] is False
    assert config(tmp_path)["MAIL_SMTP"] is None


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MAIL_URL": "http://mail.example.kr", "MAIL_FROM": "a@x.kr"}, "MAIL_URL"),
        ({"MAIL_URL": "smtp://mail.example.kr:99999", "MAIL_FROM": "a@x.kr"}, "MAIL_URL"),
        ({"MAIL_URL": "smtp://h?starttls=maybe", "MAIL_FROM": "a@x.kr"}, "MAIL_URL"),
        ({"MAIL_URL": "smtp://mail.example.kr"}, "MAIL_FROM"),
        ({"MAIL_URL": "smtp://h", "SMTP_HOST": "h", "MAIL_FROM": "a@x.kr"}, "MAIL_URL"),
        ({"SMTP_HOST": "h", "SMTP_PORT": "x", "MAIL_FROM": "a@x.kr"}, "SMTP_PORT"),
        ({"SMTP_HOST": "h", "SMTP_PORT": "70000", "MAIL_FROM": "a@x.kr"}, "SMTP_PORT"),
        ({"SMTP_HOST": "h", "SMTP_STARTTLS": "yes please", "MAIL_FROM": "a@x.kr"}, "SMTP_STARTTLS"),
        ({"MAIL_FROM": "not an address"}, "MAIL_FROM"),
        ({"MAIL_DEV_PAGE": "maybe"}, "MAIL_DEV_PAGE"),
        ({"MAIL_TIMEOUT": "0"}, "MAIL_TIMEOUT"),
    ],
)
def test_bad_mail_settings_name_the_variable(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        config(tmp_path, **env)
    assert variable in str(refused.value)
    assert "\n" not in str(refused.value)


def test_production_refuses_the_development_page_and_a_clear_password() -> None:
    prod = {
        "APP_ENV": "production",
        "SECRET_KEY": "p" * 40,
        "TOSS_CLIENT_KEY": "live_gck_abc",
        "TOSS_SECRET_KEY": "live_gsk_abc",
        "PUBLIC_BASE_URL": "https://shop.example.kr",
        "TRUSTED_PROXY_COUNT": "1",
    }
    assert load_config(environ=prod)["MAIL_DEV_PAGE"] is False
    with pytest.raises(ConfigError, match="MAIL_DEV_PAGE"):
        load_config(environ={**prod, "MAIL_DEV_PAGE": "1"})
    with pytest.raises(ConfigError, match="MAIL_URL"):
        load_config(
            environ={
                **prod,
                "MAIL_URL": "smtp://u:p@mail.example.kr?starttls=0",
                "MAIL_FROM": "a@x.kr",
            }
        )


def test_shipping_mails_the_carrier_and_tracking_number_once(
    shop: Flask, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    shopper = Shopper(shop, shop.test_client())
    order_id, amount = ordered(shop, shopper)
    shopper.pay_in_sandbox(order_id, amount)
    with shop.app_context():
        advance(order_id, FulfilmentStatus.PREPARING, "admin")
    with shop.app_context():
        advance(
            order_id,
            FulfilmentStatus.SHIPPED,
            "admin",
            carrier="CJ대한통운",
            tracking_number="123456789012",
        )
    assert [kind for kind, _, _ in outbox(shop)] == ["paid", "shipped"]
    drain(shop)
    shipped = inbox.received[-1]
    assert "발송되었습니다" in str(shipped["Subject"])
    text = text_of(shipped)
    assert "택배사: CJ대한통운" in text
    assert "송장번호: 123456789012" in text
    with shop.app_context(), pytest.raises(ServiceError):
        advance(
            order_id,
            FulfilmentStatus.SHIPPED,
            "admin",
            carrier="CJ대한통운",
            tracking_number="1234",
        )
    assert [kind for kind, _, _ in outbox(shop)] == ["paid", "shipped"]
