"""How money, banks and times read on a Korean page (the templates' filters)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from .clock import KST

# Toss's bank codes (virtualAccount.bankCode) → the names shoppers know.
BANKS_KO = {
    "02": "KDB산업은행",
    "03": "IBK기업은행",
    "04": "KB국민은행",
    "07": "Sh수협은행",
    "11": "NH농협은행",
    "12": "지역농축협",
    "20": "우리은행",
    "23": "SC제일은행",
    "27": "씨티은행",
    "31": "iM뱅크(대구)",
    "32": "부산은행",
    "34": "광주은행",
    "35": "제주은행",
    "37": "전북은행",
    "39": "경남은행",
    "45": "새마을금고",
    "48": "신협",
    "50": "저축은행",
    "64": "산림조합",
    "71": "우체국예금보험",
    "81": "하나은행",
    "88": "신한은행",
    "89": "케이뱅크",
    "90": "카카오뱅크",
    "92": "토스뱅크",
}


def won(value: int | None) -> str:
    """103000 → "103,000원"."""
    return "-" if value is None else f"{value:,}원"


def bank(code: str | None) -> str:
    return "-" if not code else BANKS_KO.get(code, code)


def kst(value: str | None) -> str:
    """Toss's ISO-8601 times shown as Korean local time, e.g. 2026년 11월 25일 23:59."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(KST)
    return f"{moment.year}년 {moment.month}월 {moment.day}일 {moment:%H:%M}"


def kst_time(value: datetime | None) -> str:
    """A stored UTC time as Korean local time to the second, e.g. 2026-11-22 10:00:05."""
    if value is None:
        return "-"
    return value.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S")


FILTERS: dict[str, Callable[..., str]] = {
    "won": won,
    "bank": bank,
    "kst": kst,
    "kst_time": kst_time,
}
