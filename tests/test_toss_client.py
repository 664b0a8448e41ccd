"""Behaviour of `payments.toss.TossClient` against a Toss faked by `responses`."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import responses

from payments.toss import (
    Payment,
    RefundAccount,
    TossClient,
    TossError,
    TossNetworkError,
)
from tests.helpers import CONFIRM_URL, SECRET_KEY, TOSS, error_json, fixture

BASE = TOSS
# The built-in sandbox's secret key: never a real key in tests.
SECRET = SECRET_KEY
EXPECTED_AUTH = "Basic " + base64.b64encode(f"{SECRET}:".encode()).decode("ascii")

PAYMENT_KEY = "tgen_20240905121809Abc12"
ORDER_ID = "ord_7Hq2xK9mPz4LwR8t"
AMOUNT = 15000
IDEM_KEY = "confirm:ord_7Hq2xK9mPz4LwR8t:tgen_20240905121809Abc12"


# -- helpers ----------------------------------------------------------------------------------


def load_fixture(name: str) -> dict[str, Any]:
    """A recorded Toss answer under tests/fixtures/toss, as Toss sent it."""
    data: dict[str, Any] = fixture(f"toss/{name}")
    return data


def recorded_payment(**changes: Any) -> dict[str, Any]:
    """The recorded DONE card payment (PAYMENT_KEY, ORDER_ID, AMOUNT) with some fields changed.

    Unlike `tests.helpers.payment_json`, which rewrites it for a shop's order, this is the
    fixture's own values, which the parsing tests below check field by field."""
    data = load_fixture("payment_done_card.json")
    data.update(changes)
    return data


def sent_json(call: Any) -> dict[str, Any]:
    body = call.request.body
    assert body is not None
    if isinstance(body, str):
        body = body.encode()
    data: dict[str, Any] = json.loads(body.decode("utf-8"))
    return data


class SleepRecorder:
    """Stands in for `time.sleep`: records the delays, never waits."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_client(sleeps: SleepRecorder) -> Callable[..., TossClient]:
    def factory(**kwargs: Any) -> TossClient:
        kwargs.setdefault("sleep", sleeps)
        return TossClient(SECRET, BASE, **kwargs)

    return factory


@pytest.fixture
def client(make_client: Callable[..., TossClient]) -> TossClient:
    return make_client(max_retries=2, backoff=0.5)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    # Any request not registered here fails with ConnectionError: nothing can reach a real host.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def do_confirm(client: TossClient) -> Payment:
    return client.confirm(PAYMENT_KEY, ORDER_ID, AMOUNT, idempotency_key=IDEM_KEY)


# Each entry: (name, method, url to fake, call).
CALLS: list[tuple[str, str, str, Callable[[TossClient], Payment]]] = [
    ("confirm", "POST", CONFIRM_URL, do_confirm),
    (
        "get_payment",
        "GET",
        f"{BASE}/v1/payments/{PAYMENT_KEY}",
        lambda c: c.get_payment(PAYMENT_KEY),
    ),
    (
        "get_payment_by_order",
        "GET",
        f"{BASE}/v1/payments/orders/{ORDER_ID}",
        lambda c: c.get_payment_by_order(ORDER_ID),
    ),
    (
        "cancel",
        "POST",
        f"{BASE}/v1/payments/{PAYMENT_KEY}/cancel",
        lambda c: c.cancel(PAYMENT_KEY, "고객 요청", idempotency_key="refund:1"),
    ),
]
CALL_IDS = [name for name, *_ in CALLS]


# -- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "method", "url", "call"), CALLS, ids=CALL_IDS)
def test_authorization_is_basic_secret_key_with_trailing_colon(
    client: TossClient,
    rsps: responses.RequestsMock,
    name: str,
    method: str,
    url: str,
    call: Callable[[TossClient], Payment],
) -> None:
    rsps.add(method, url, json=recorded_payment())

    call(client)

    assert len(rsps.calls) == 1
    auth = rsps.calls[0].request.headers["Authorization"]
    assert auth == EXPECTED_AUTH
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == SECRET + ":"


def test_empty_secret_key_is_refused() -> None:
    with pytest.raises(ValueError, match="secret_key"):
        TossClient("", BASE, sleep=SleepRecorder())


# -- request shape ----------------------------------------------------------------------------


def test_confirm_posts_json_body_with_idempotency_key(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    rsps.add(responses.POST, CONFIRM_URL, json=recorded_payment())

    payment = do_confirm(client)

    assert len(rsps.calls) == 1
    request = rsps.calls[0].request
    assert request.method == "POST"
    assert request.url == CONFIRM_URL
    assert request.headers["Idempotency-Key"] == IDEM_KEY
    assert request.headers["Content-Type"].startswith("application/json")
    body = sent_json(rsps.calls[0])
    assert body == {"paymentKey": PAYMENT_KEY, "orderId": ORDER_ID, "amount": AMOUNT}
    assert type(body["amount"]) is int
    assert payment.payment_key == PAYMENT_KEY
    assert payment.status == "DONE"


@pytest.mark.parametrize(
    ("name", "method", "url", "call"),
    [c for c in CALLS if c[1] == "GET"],
    ids=[c[0] for c in CALLS if c[1] == "GET"],
)
def test_get_calls_send_no_idempotency_key_and_no_body(
    client: TossClient,
    rsps: responses.RequestsMock,
    name: str,
    method: str,
    url: str,
    call: Callable[[TossClient], Payment],
) -> None:
    rsps.add(responses.GET, url, json=recorded_payment())

    payment = call(client)

    assert len(rsps.calls) == 1
    request = rsps.calls[0].request
    assert request.method == "GET"
    assert request.url == url
    assert "Idempotency-Key" not in request.headers
    assert not request.body
    assert payment.order_id == ORDER_ID


# -- timeouts passed to requests --------------------------------------------------------------


class RecordingSession(requests.Session):
    """A real session (so `responses` still answers) that remembers the kwargs of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, **kwargs: Any) -> Any:  # type: ignore[override]
        self.seen.append(kwargs)
        return super().request(method, url, **kwargs)


def test_explicit_connect_read_timeout_tuple_via_session(
    rsps: responses.RequestsMock, sleeps: SleepRecorder
) -> None:
    session = RecordingSession()
    client = TossClient(
        SECRET, BASE, connect_timeout=3.0, read_timeout=45.0, session=session, sleep=sleeps
    )
    rsps.add(responses.GET, f"{BASE}/v1/payments/{PAYMENT_KEY}", json=recorded_payment())

    client.get_payment(PAYMENT_KEY)

    assert client.session is session
    assert [kw.get("timeout") for kw in session.seen] == [(3.0, 45.0)]


def test_default_timeouts_are_explicit_on_every_attempt(
    client: TossClient, rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    original = client.session.request

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(client.session, "request", recording)
    rsps.add(responses.POST, CONFIRM_URL, body=requests.exceptions.ReadTimeout())
    rsps.add(responses.POST, CONFIRM_URL, json=recorded_payment())

    do_confirm(client)

    assert len(seen) == 2
    for kwargs in seen:
        timeout = kwargs.get("timeout")
        assert isinstance(timeout, tuple)
        assert timeout == (5.0, 30.0)


# -- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "expected_sleeps"),
    [(1, [0.5]), (2, [0.5, 1.0])],
)
def test_5xx_is_retried_with_same_key_and_exponential_backoff(
    client: TossClient,
    rsps: responses.RequestsMock,
    sleeps: SleepRecorder,
    failures: int,
    expected_sleeps: list[float],
) -> None:
    for _ in range(failures):
        rsps.add(
            responses.POST,
            CONFIRM_URL,
            status=500,
            json=error_json("FAILED_INTERNAL_SYSTEM_PROCESSING"),
        )
    rsps.add(responses.POST, CONFIRM_URL, json=recorded_payment())

    payment = do_confirm(client)

    assert payment.status == "DONE"
    assert len(rsps.calls) == failures + 1
    assert {c.request.headers["Idempotency-Key"] for c in rsps.calls} == {IDEM_KEY}
    assert all(sent_json(c)["paymentKey"] == PAYMENT_KEY for c in rsps.calls)
    assert sleeps.delays == expected_sleeps


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (409, error_json("IDEMPOTENT_REQUEST_PROCESSING")),
        (429, error_json("TOO_MANY_REQUESTS")),
        (429, None),
        (400, error_json("PROVIDER_ERROR")),
        (400, error_json("CARD_PROCESSING_ERROR")),
        (403, error_json("FORBIDDEN_CONSECUTIVE_REQUEST")),
        (500, error_json("UNKNOWN_PAYMENT_ERROR")),
        (503, None),
    ],
    ids=[
        "409-IDEMPOTENT_REQUEST_PROCESSING",
        "429-TOO_MANY_REQUESTS",
        "429-no-body",
        "400-PROVIDER_ERROR",
        "400-CARD_PROCESSING_ERROR",
        "403-FORBIDDEN_CONSECUTIVE_REQUEST",
        "500-UNKNOWN_PAYMENT_ERROR",
        "503-no-body",
    ],
)
def test_retryable_answer_then_success(
    client: TossClient,
    rsps: responses.RequestsMock,
    sleeps: SleepRecorder,
    status: int,
    body: dict[str, str] | None,
) -> None:
    if body is None:
        rsps.add(responses.POST, CONFIRM_URL, status=status, body="")
    else:
        rsps.add(responses.POST, CONFIRM_URL, status=status, json=body)
    rsps.add(responses.POST, CONFIRM_URL, json=recorded_payment())

    payment = do_confirm(client)

    assert payment.payment_key == PAYMENT_KEY
    assert len(rsps.calls) == 2
    keys = [c.request.headers["Idempotency-Key"] for c in rsps.calls]
    assert keys == [IDEM_KEY, IDEM_KEY]
    assert sleeps.delays == [0.5]


def test_cancel_retry_reuses_its_idempotency_key(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    url = f"{BASE}/v1/payments/{PAYMENT_KEY}/cancel"
    rsps.add(responses.POST, url, status=500, json=error_json("FAILED_REFUND_PROCESS"))
    rsps.add(responses.POST, url, json=load_fixture("payment_partial_canceled.json"))

    client.cancel(PAYMENT_KEY, "품절", idempotency_key="refund:42", cancel_amount=12000)

    assert [c.request.headers["Idempotency-Key"] for c in rsps.calls] == [
        "refund:42",
        "refund:42",
    ]
    assert sent_json(rsps.calls[0]) == sent_json(rsps.calls[1])


@pytest.mark.parametrize("max_retries", [0, 1, 2, 3])
def test_retries_are_bounded_by_max_retries(
    make_client: Callable[..., TossClient],
    rsps: responses.RequestsMock,
    sleeps: SleepRecorder,
    max_retries: int,
) -> None:
    client = make_client(max_retries=max_retries, backoff=0.5)
    rsps.add(responses.POST, CONFIRM_URL, status=400, json=error_json("PROVIDER_ERROR"))

    with pytest.raises(TossError) as excinfo:
        do_confirm(client)

    assert len(rsps.calls) == max_retries + 1
    assert sleeps.delays == [0.5 * 2**i for i in range(max_retries)]
    err = excinfo.value
    assert err.code == "PROVIDER_ERROR"
    assert err.http_status == 400
    assert err.retryable is True


def test_backoff_is_scaled_by_the_configured_base(
    make_client: Callable[..., TossClient],
    rsps: responses.RequestsMock,
    sleeps: SleepRecorder,
) -> None:
    client = make_client(max_retries=3, backoff=0.25)
    rsps.add(responses.GET, f"{BASE}/v1/payments/{PAYMENT_KEY}", status=502, body="")

    with pytest.raises(TossError):
        client.get_payment(PAYMENT_KEY)

    assert len(rsps.calls) == 4
    assert sleeps.delays == [0.25, 0.5, 1.0]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, "REJECT_CARD_PAYMENT"),
        (403, "REJECT_CARD_COMPANY"),
        (401, "UNAUTHORIZED_KEY"),
        (403, "INCORRECT_BASIC_AUTH_FORMAT"),
        (404, "NOT_FOUND_PAYMENT_SESSION"),
        (400, "ALREADY_PROCESSED_PAYMENT"),
        (400, "INVALID_REQUEST"),
        (400, "BELOW_MINIMUM_AMOUNT"),
    ],
)
def test_final_answers_are_never_retried(
    client: TossClient,
    rsps: responses.RequestsMock,
    sleeps: SleepRecorder,
    status: int,
    code: str,
) -> None:
    message = "카드사에서 거절했습니다."
    rsps.add(responses.POST, CONFIRM_URL, status=status, json=error_json(code, message))
    rsps.add(responses.POST, CONFIRM_URL, json=recorded_payment())  # must never be reached

    with pytest.raises(TossError) as excinfo:
        do_confirm(client)

    assert len(rsps.calls) == 1
    assert sleeps.delays == []
    err = excinfo.value
    assert not isinstance(err, TossNetworkError)
    assert err.code == code
    assert err.message == message
    assert err.http_status == status
    assert err.retryable is False
    assert err.outcome_unknown is False


def test_not_found_payment_on_get_is_not_retried(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    url = f"{BASE}/v1/payments/orders/{ORDER_ID}"
    rsps.add(responses.GET, url, status=404, json=error_json("NOT_FOUND_PAYMENT"))

    with pytest.raises(TossError) as excinfo:
        client.get_payment_by_order(ORDER_ID)

    assert len(rsps.calls) == 1
    assert excinfo.value.code == "NOT_FOUND_PAYMENT"
    assert excinfo.value.retryable is False


def test_exhausted_idempotent_request_processing_leaves_outcome_unknown(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    rsps.add(
        responses.POST, CONFIRM_URL, status=409, json=error_json("IDEMPOTENT_REQUEST_PROCESSING")
    )

    with pytest.raises(TossError) as excinfo:
        do_confirm(client)

    assert len(rsps.calls) == 3
    assert excinfo.value.code == "IDEMPOTENT_REQUEST_PROCESSING"
    assert excinfo.value.outcome_unknown is True


# -- network failures -------------------------------------------------------------------------


def test_read_timeout_on_confirm_is_retried_with_same_key(
    client: TossClient, rsps: responses.RequestsMock, sleeps: SleepRecorder
) -> None:
    rsps.add(responses.POST, CONFIRM_URL, body=requests.exceptions.ReadTimeout())
    rsps.add(responses.POST, CONFIRM_URL, json=recorded_payment())

    payment = do_confirm(client)

    assert payment.status == "DONE"
    assert len(rsps.calls) == 2
    assert [c.request.headers["Idempotency-Key"] for c in rsps.calls] == [IDEM_KEY, IDEM_KEY]
    assert sleeps.delays == [0.5]


def test_read_timeout_exhausted_on_confirm_leaves_outcome_unknown(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    rsps.add(responses.POST, CONFIRM_URL, body=requests.exceptions.ReadTimeout())

    with pytest.raises(TossNetworkError) as excinfo:
        do_confirm(client)

    assert len(rsps.calls) == 3
    assert {c.request.headers["Idempotency-Key"] for c in rsps.calls} == {IDEM_KEY}
    err = excinfo.value
    assert err.code == "READ_TIMEOUT"
    assert err.retryable is True
    assert err.outcome_unknown is True
    assert err.http_status is None


@pytest.mark.parametrize(
    "later",
    [
        {"body": requests.exceptions.ConnectTimeout()},
        {"status": 429, "json": {"code": "TOO_MANY_REQUESTS", "message": "busy"}},
    ],
    ids=["connect-timeout", "429"],
)
def test_a_lost_answer_stays_unknown_when_later_tries_are_turned_away(
    client: TossClient, rsps: responses.RequestsMock, later: dict[str, Any]
) -> None:
    """The first try may have confirmed; "busy" or "unreachable" afterwards says nothing."""
    rsps.add(responses.POST, CONFIRM_URL, body=requests.exceptions.ReadTimeout())
    rsps.add(responses.POST, CONFIRM_URL, **later)
    rsps.add(responses.POST, CONFIRM_URL, **later)

    with pytest.raises(TossError) as excinfo:
        do_confirm(client)

    assert len(rsps.calls) == 3
    assert excinfo.value.outcome_unknown is True


def test_a_definitive_answer_after_a_lost_one_is_believed(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    """With the same Idempotency-Key, Toss's refusal is its answer about this very operation."""
    rsps.add(responses.POST, CONFIRM_URL, body=requests.exceptions.ReadTimeout())
    rsps.add(
        responses.POST,
        CONFIRM_URL,
        status=403,
        json={"code": "REJECT_CARD_PAYMENT", "message": "x"},
    )
    with pytest.raises(TossError) as excinfo:
        do_confirm(client)
    assert excinfo.value.code == "REJECT_CARD_PAYMENT"
    assert excinfo.value.outcome_unknown is False


def test_connect_timeout_means_nothing_happened(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    rsps.add(responses.POST, CONFIRM_URL, body=requests.exceptions.ConnectTimeout())

    with pytest.raises(TossNetworkError) as excinfo:
        do_confirm(client)

    assert len(rsps.calls) == 3
    err = excinfo.value
    assert err.code == "CONNECT_TIMEOUT"
    assert err.retryable is True
    assert err.outcome_unknown is False


@pytest.mark.parametrize(
    ("name", "method", "url", "call"),
    [c for c in CALLS if c[1] == "POST"],
    ids=[c[0] for c in CALLS if c[1] == "POST"],
)
def test_connection_reset_on_post_leaves_outcome_unknown(
    client: TossClient,
    rsps: responses.RequestsMock,
    name: str,
    method: str,
    url: str,
    call: Callable[[TossClient], Payment],
) -> None:
    reset = requests.exceptions.ConnectionError("Connection reset by peer")
    rsps.add(responses.POST, url, body=reset)

    with pytest.raises(TossNetworkError) as excinfo:
        call(client)

    assert len(rsps.calls) == 3
    assert excinfo.value.code == "CONNECTION_ERROR"
    assert excinfo.value.retryable is True
    assert excinfo.value.outcome_unknown is True


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (requests.exceptions.ReadTimeout(), "READ_TIMEOUT"),
        (requests.exceptions.ConnectionError("Connection reset by peer"), "CONNECTION_ERROR"),
    ],
    ids=["read-timeout", "reset"],
)
def test_network_failure_on_get_does_not_leave_outcome_unknown(
    client: TossClient, rsps: responses.RequestsMock, exc: Exception, code: str
) -> None:
    rsps.add(responses.GET, f"{BASE}/v1/payments/{PAYMENT_KEY}", body=exc)

    with pytest.raises(TossNetworkError) as excinfo:
        client.get_payment(PAYMENT_KEY)

    assert len(rsps.calls) == 3
    assert excinfo.value.code == code
    assert excinfo.value.retryable is True
    assert excinfo.value.outcome_unknown is False


def test_read_timeout_on_get_then_success(client: TossClient, rsps: responses.RequestsMock) -> None:
    url = f"{BASE}/v1/payments/orders/{ORDER_ID}"
    rsps.add(responses.GET, url, body=requests.exceptions.ReadTimeout())
    rsps.add(responses.GET, url, json=recorded_payment())

    payment = client.get_payment_by_order(ORDER_ID)

    assert payment.order_id == ORDER_ID
    assert len(rsps.calls) == 2


# -- unreadable answers -----------------------------------------------------------------------

HTML_500 = "<html><head><title>500 Internal Server Error</title></head><body>nginx</body></html>"


def test_html_500_is_retryable_and_outcome_unknown(
    client: TossClient, rsps: responses.RequestsMock, sleeps: SleepRecorder
) -> None:
    rsps.add(responses.POST, CONFIRM_URL, status=500, body=HTML_500, content_type="text/html")

    with pytest.raises(TossError) as excinfo:
        do_confirm(client)

    assert len(rsps.calls) == 3
    assert sleeps.delays == [0.5, 1.0]
    err = excinfo.value
    assert err.http_status == 500
    assert err.retryable is True
    assert err.outcome_unknown is True


def test_html_500_then_success(client: TossClient, rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, CONFIRM_URL, status=500, body=HTML_500, content_type="text/html")
    rsps.add(responses.POST, CONFIRM_URL, json=recorded_payment())

    assert do_confirm(client).status == "DONE"
    assert len(rsps.calls) == 2


def test_truncated_json_success_on_post_is_invalid_response_outcome_unknown(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    full = json.dumps(recorded_payment(), ensure_ascii=False)
    rsps.add(
        responses.POST, CONFIRM_URL, status=200, body=full[:57], content_type="application/json"
    )

    with pytest.raises(TossError) as excinfo:
        do_confirm(client)

    assert len(rsps.calls) >= 1
    assert {c.request.headers["Idempotency-Key"] for c in rsps.calls} == {IDEM_KEY}
    err = excinfo.value
    assert err.code == "INVALID_RESPONSE"
    assert err.outcome_unknown is True


def test_truncated_json_success_on_get_is_invalid_response_outcome_known(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/v1/payments/{PAYMENT_KEY}",
        status=200,
        body='{"paymentKey": "tgen_',
        content_type="application/json",
    )

    with pytest.raises(TossError) as excinfo:
        client.get_payment(PAYMENT_KEY)

    assert excinfo.value.code == "INVALID_RESPONSE"
    assert excinfo.value.outcome_unknown is False


@pytest.mark.parametrize(
    "missing", ["paymentKey", "orderId", "status", "totalAmount"], ids=lambda m: f"no-{m}"
)
def test_success_without_essential_field_is_invalid_response(
    client: TossClient, rsps: responses.RequestsMock, missing: str
) -> None:
    body = recorded_payment()
    del body[missing]
    rsps.add(responses.POST, CONFIRM_URL, json=body)

    with pytest.raises(TossError) as excinfo:
        do_confirm(client)

    err = excinfo.value
    assert err.code == "INVALID_RESPONSE"
    assert err.http_status == 200
    assert err.outcome_unknown is True


def test_success_with_json_that_is_not_an_object_is_invalid_response(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    rsps.add(responses.POST, CONFIRM_URL, json=[recorded_payment()])

    with pytest.raises(TossError) as excinfo:
        do_confirm(client)

    assert excinfo.value.code == "INVALID_RESPONSE"
    assert excinfo.value.outcome_unknown is True


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_full_sends_only_the_reason(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    url = f"{BASE}/v1/payments/{PAYMENT_KEY}/cancel"
    canceled = recorded_payment(status="CANCELED", balanceAmount=0)
    rsps.add(responses.POST, url, json=canceled)

    payment = client.cancel(PAYMENT_KEY, "고객 변심", idempotency_key="refund:7")

    assert len(rsps.calls) == 1
    request = rsps.calls[0].request
    assert request.method == "POST"
    assert request.headers["Idempotency-Key"] == "refund:7"
    assert request.headers["Content-Type"].startswith("application/json")
    assert sent_json(rsps.calls[0]) == {"cancelReason": "고객 변심"}
    assert payment.status == "CANCELED"
    assert payment.balance_amount == 0


def test_cancel_partial_with_refundable_amount(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    url = f"{BASE}/v1/payments/{PAYMENT_KEY}/cancel"
    rsps.add(responses.POST, url, json=load_fixture("payment_partial_canceled.json"))

    payment = client.cancel(
        PAYMENT_KEY,
        "드립백 1건 품절",
        idempotency_key="refund:8",
        cancel_amount=12000,
        refundable_amount=50000,
    )

    body = sent_json(rsps.calls[0])
    assert body == {
        "cancelReason": "드립백 1건 품절",
        "cancelAmount": 12000,
        "refundableAmount": 50000,
    }
    assert type(body["cancelAmount"]) is int
    assert "refundReceiveAccount" not in body
    assert payment.status == "PARTIAL_CANCELED"


def test_cancel_with_refund_account(client: TossClient, rsps: responses.RequestsMock) -> None:
    url = f"{BASE}/v1/payments/{PAYMENT_KEY}/cancel"
    rsps.add(responses.POST, url, json=recorded_payment(status="CANCELED", balanceAmount=0))
    account = RefundAccount(bank="20", account_number="1002345678901", holder_name="김토스")

    client.cancel(PAYMENT_KEY, "입금 후 취소", idempotency_key="refund:9", refund_account=account)

    body = sent_json(rsps.calls[0])
    assert body == {
        "cancelReason": "입금 후 취소",
        "refundReceiveAccount": {
            "bank": "20",
            "accountNumber": "1002345678901",
            "holderName": "김토스",
        },
    }


@pytest.mark.parametrize(
    ("payment_key", "quoted"),
    [
        ("tgen/abc def", "tgen%2Fabc%20def"),
        ("tgen?x=1#y", "tgen%3Fx%3D1%23y"),
        ("../orders/x", "..%2Forders%2Fx"),
    ],
)
def test_payment_key_is_quoted_into_the_path(
    client: TossClient, rsps: responses.RequestsMock, payment_key: str, quoted: str
) -> None:
    rsps.add(responses.POST, re.compile(re.escape(BASE) + r"/.*"), json=recorded_payment())
    rsps.add(responses.GET, re.compile(re.escape(BASE) + r"/.*"), json=recorded_payment())

    client.cancel(payment_key, "사유", idempotency_key="refund:10")
    client.get_payment(payment_key)

    assert [c.request.path_url for c in rsps.calls] == [
        f"/v1/payments/{quoted}/cancel",
        f"/v1/payments/{quoted}",
    ]


def test_order_id_is_quoted_into_the_path(client: TossClient, rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, re.compile(re.escape(BASE) + r"/.*"), json=recorded_payment())

    client.get_payment_by_order("a/b")

    assert rsps.calls[0].request.path_url == "/v1/payments/orders/a%2Fb"


# -- Idempotency-Key validation ---------------------------------------------------------------


POSTS: dict[str, Callable[[TossClient, str], Payment]] = {
    "confirm": lambda c, key: c.confirm(PAYMENT_KEY, ORDER_ID, AMOUNT, idempotency_key=key),
    "cancel": lambda c, key: c.cancel(PAYMENT_KEY, "사유", idempotency_key=key),
}


@pytest.mark.parametrize("key", ["", "k" * 301], ids=["empty", "301-chars"])
@pytest.mark.parametrize("operation", sorted(POSTS))
def test_bad_idempotency_key_is_refused_before_any_http_call(
    client: TossClient, rsps: responses.RequestsMock, key: str, operation: str
) -> None:
    rsps.add(responses.POST, re.compile(re.escape(BASE) + r"/.*"), json=recorded_payment())
    post = POSTS[operation]

    with pytest.raises(ValueError, match="Idempotency-Key"):
        post(client, key)

    assert len(rsps.calls) == 0


def test_idempotency_key_of_300_chars_is_accepted(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    rsps.add(responses.POST, CONFIRM_URL, json=recorded_payment())
    key = "k" * 300

    client.confirm(PAYMENT_KEY, ORDER_ID, AMOUNT, idempotency_key=key)

    assert rsps.calls[0].request.headers["Idempotency-Key"] == key


def test_idempotency_key_with_newline_is_refused_before_any_http_call(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    rsps.add(responses.POST, CONFIRM_URL, json=recorded_payment())

    with pytest.raises(ValueError, match="Idempotency-Key") as excinfo:
        client.confirm(PAYMENT_KEY, ORDER_ID, AMOUNT, idempotency_key="confirm:ord\r\nX-Evil: 1")

    assert not isinstance(excinfo.value, TossError)
    assert len(rsps.calls) == 0


# -- Payment.from_dict ------------------------------------------------------------------------


def test_payment_from_done_card_fixture() -> None:
    data = load_fixture("payment_done_card.json")

    p = Payment.from_dict(data)

    assert p.payment_key == "tgen_20240905121809Abc12"
    assert p.order_id == "ord_7Hq2xK9mPz4LwR8t"
    assert p.order_name == "유기농 원두 1kg 외 2건"
    assert p.status == "DONE"
    assert p.type == "NORMAL"
    assert p.method == "카드"
    assert p.currency == "KRW"
    assert p.m_id == "tvivarepublica"
    assert p.total_amount == 15000
    assert p.balance_amount == 15000
    assert p.supplied_amount == 13636
    assert p.vat == 1364
    assert p.tax_free_amount == 0
    assert p.requested_at == "2024-09-05T12:18:09+09:00"
    assert p.approved_at == "2024-09-05T12:19:21+09:00"
    assert p.last_transaction_key == "txrd_a01j6y3m5c8k2n4p7q9r1s3t5v"
    assert p.secret is None
    assert p.receipt_url is not None
    assert p.receipt_url.startswith("https://dashboard.tosspayments.com/receipt/")
    assert p.checkout_url == f"{BASE}/v1/payments/tgen_20240905121809Abc12/checkout"
    assert p.card is not None
    assert p.card.number == "43301234****123*"
    assert "*" in p.card.number
    assert p.card.approve_no == "00000000"
    assert p.card.card_type == "신용"
    assert p.card.owner_type == "개인"
    assert p.card.issuer_code == "71"
    assert p.card.installment_plan_months == 0
    assert p.virtual_account is None
    assert p.cancels == ()
    assert p.failure_code is None
    assert p.is_partial_cancelable is True
    assert p.raw == data


def test_payment_from_waiting_for_deposit_fixture() -> None:
    p = Payment.from_dict(load_fixture("payment_waiting_for_deposit.json"))

    assert p.status == "WAITING_FOR_DEPOSIT"
    assert p.method == "가상계좌"
    assert p.approved_at is None
    assert p.card is None
    assert p.secret == "ps_Wd46qopOB89gRbalbP0aVZmM75y0"
    va = p.virtual_account
    assert va is not None
    assert va.account_number == "X6515006029612"
    assert va.bank_code == "20"
    assert va.customer_name == "김토스"
    assert va.due_date == "2024-09-12T23:59:59+09:00"
    assert va.refund_status == "NONE"
    assert va.expired is False
    assert p.total_amount == p.balance_amount == 32000


def test_payment_from_partial_canceled_fixture() -> None:
    p = Payment.from_dict(load_fixture("payment_partial_canceled.json"))

    assert p.status == "PARTIAL_CANCELED"
    assert p.total_amount == 50000
    assert p.balance_amount == 38000
    assert p.last_transaction_key == "txrd_c03l8a5o7e0m4p6r9s1t3u5v7x"
    assert p.card is not None
    assert p.card.installment_plan_months == 3
    assert len(p.cancels) == 1
    cancel = p.cancels[0]
    assert cancel.cancel_amount == 12000
    assert cancel.cancel_reason == "드립백 1건 품절"
    assert cancel.canceled_at == "2024-09-06T15:10:44+09:00"
    assert cancel.transaction_key == "txrd_d04m9b6p8f1n5q7s0t2u4v6w8y"
    assert cancel.cancel_status == "DONE"
    assert cancel.refundable_amount == 38000
    assert p.total_amount - sum(c.cancel_amount or 0 for c in p.cancels) == p.balance_amount


@pytest.mark.parametrize(
    "name",
    ["payment_done_card.json", "payment_waiting_for_deposit.json", "payment_partial_canceled.json"],
)
def test_fixtures_are_consistent_with_toss_rules(name: str) -> None:
    data = load_fixture(name)
    taxable = data["totalAmount"] - data["taxFreeAmount"]
    assert data["vat"] == round(taxable / 11)
    assert data["suppliedAmount"] == taxable - data["vat"]
    assert data["version"] == "2022-11-16"
    for key in ("requestedAt", "approvedAt"):
        if data[key] is not None:
            assert data[key].endswith("+09:00")


def test_payment_from_dict_ignores_unknown_fields() -> None:
    data = recorded_payment(
        brandNewField={"nested": [1, 2, 3]},
        anotherOne="x",
        cancels=[
            {"cancelAmount": 1000, "cancelReason": "r", "futureField": True},
            "not-a-cancel",
        ],
    )
    data["card"] = {**data["card"], "cardBrandV2": "VISA"}
    data["virtualAccount"] = {"accountNumber": "X1", "bankCode": "88", "newFlag": 1}

    p = Payment.from_dict(data)

    assert p.payment_key == PAYMENT_KEY
    assert p.card is not None
    assert p.card.number == "43301234****123*"
    assert p.virtual_account is not None
    assert p.virtual_account.account_number == "X1"
    assert p.virtual_account.bank_code == "88"
    assert p.virtual_account.due_date is None
    assert [c.cancel_amount for c in p.cancels] == [1000]
    assert p.raw["brandNewField"] == {"nested": [1, 2, 3]}


@pytest.mark.parametrize(
    "changes",
    [
        {"paymentKey": None},
        {"orderId": ""},
        {"status": 3},
        {"totalAmount": "15000"},
        {"totalAmount": True},
    ],
    ids=["paymentKey-null", "orderId-empty", "status-int", "total-str", "total-bool"],
)
def test_payment_from_dict_rejects_ill_typed_essentials(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="paymentKey"):
        Payment.from_dict(recorded_payment(**changes))


def test_confirm_returns_parsed_virtual_account_payment(
    client: TossClient, rsps: responses.RequestsMock
) -> None:
    data = load_fixture("payment_waiting_for_deposit.json")
    rsps.add(responses.POST, CONFIRM_URL, json=data)

    p = client.confirm(
        data["paymentKey"], data["orderId"], data["totalAmount"], idempotency_key="c:1"
    )

    assert p.status == "WAITING_FOR_DEPOSIT"
    assert p.secret == data["secret"]
    assert p.virtual_account is not None
    assert p.virtual_account.account_number == "X6515006029612"
