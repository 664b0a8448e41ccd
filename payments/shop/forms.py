"""The shopper's forms (Flask-WTF): the buyer and delivery address asked before the widget opens,
and the guest's order lookup. Each field has its own Korean message; the views re-render the
form with what was typed when one fails.
"""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from wtforms import EmailField, StringField, TelField
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp, ValidationError

from .catalog import Buyer

# Toss's limits (types/index.d.ts): customerEmail and customerName at most 100 characters,
# customerMobilePhone "- 없이 숫자로만 구성된 최소 8자, 최대 15자".
EMAIL_MAX = 100
PHONE_RE = r"^[0-9]{8,15}$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PHONE_PUNCTUATION = re.compile(r"[\s\-.()+]")


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _digits(value: Any) -> Any:
    """ "010-1234-5678", "+82 10 1234 5678" → digits only; anything else is left for the
    validator to refuse."""
    return _PHONE_PUNCTUATION.sub("", value) if isinstance(value, str) else value


def _one_line(form: FlaskForm, field: Any) -> None:
    if isinstance(field.data, str) and _CONTROL.search(field.data):
        raise ValidationError("줄바꿈이나 제어 문자는 쓸 수 없습니다.")


class OrderForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    """The buyer and the delivery address, posted with the cart to `POST /orders`."""

    buyer_name = StringField(
        "이름",
        filters=[_strip],
        validators=[
            DataRequired("주문하시는 분의 이름을 입력해주세요."),
            Length(max=50, message="이름은 50자 이내로 입력해주세요."),
            _one_line,
        ],
    )
    buyer_email = EmailField(
        "이메일",
        filters=[_strip],
        validators=[
            DataRequired("주문 안내를 받을 이메일을 입력해주세요."),
            Length(max=EMAIL_MAX, message=f"이메일은 {EMAIL_MAX}자 이내로 입력해주세요."),
            # Syntax only (no DNS); an ASCII mailbox every mail server accepts.
            Email(
                "올바른 이메일 주소를 입력해주세요. (예: name@example.com)", allow_smtputf8=False
            ),  # noqa: E501
        ],
    )
    buyer_phone = TelField(
        "휴대폰 번호",
        filters=[_strip, _digits],
        validators=[
            DataRequired("휴대폰 번호를 입력해주세요."),
            Regexp(
                PHONE_RE, message="휴대폰 번호는 숫자 8~15자리로 입력해주세요. (예: 01012345678)"
            ),  # noqa: E501
        ],
    )
    postcode = StringField(
        "우편번호",
        filters=[_strip, lambda v: v.replace("-", "") if isinstance(v, str) else v],
        validators=[
            DataRequired("우편번호를 입력해주세요."),
            Regexp(r"^[0-9]{5}$", message="우편번호는 숫자 5자리로 입력해주세요."),
        ],
    )
    address = StringField(
        "주소",
        filters=[_strip],
        validators=[
            DataRequired("배송 받을 주소를 입력해주세요."),
            Length(max=200, message="주소는 200자 이내로 입력해주세요."),
            _one_line,
        ],
    )
    address_detail = StringField(
        "상세 주소",
        filters=[_strip],
        validators=[
            Optional(),
            Length(max=200, message="상세 주소는 200자 이내로 입력해주세요."),
            _one_line,
        ],
    )

    def buyer(self) -> Buyer:
        """The validated fields as the order service takes them (call after `validate()`)."""
        return Buyer(
            name=self.buyer_name.data,
            email=self.buyer_email.data,
            phone=self.buyer_phone.data,
            postcode=self.postcode.data,
            address=self.address.data,
            address_detail=self.address_detail.data or "",
        )


class LookupForm(FlaskForm):  # type: ignore[misc]
    """A guest's way back to an order: its orderId and the e-mail given with it."""

    order_id = StringField(
        "주문번호",
        filters=[_strip],
        validators=[
            DataRequired("주문번호를 입력해주세요."),
            Regexp(r"^[A-Za-z0-9_-]{6,64}$", message="주문번호를 정확히 입력해주세요."),
        ],
    )
    email = EmailField(
        "이메일",
        filters=[_strip],
        validators=[
            DataRequired("주문할 때 입력한 이메일을 입력해주세요."),
            Length(max=254, message="이메일을 정확히 입력해주세요."),
            _one_line,
        ],
    )
