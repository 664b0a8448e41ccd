"""The bare stack the product is measured against: Flask, Jinja, Flask-SQLAlchemy on psycopg 3
and requests.

No product code: what any Flask app on this stack pays per request, under the same gunicorn
settings (`gunicorn bench.baseline_app:app -c gunicorn.conf.py`), so bench/run.py can express the
product's figures as ratios that hold on a noisy machine.

Routes
  GET  /text               a plain-text answer
  GET  /page               a Jinja page (a base layout and a loop over eight items, like the
                           catalog)
  POST /insert             one SQLAlchemy insert of the JSON body, then a JSON answer
  GET  /checkout/success   the bare Flask confirmation (the peer of the product's): one
                           `requests` POST of paymentKey, orderId and amount to Toss's confirm
                           (BASELINE_TOSS_API_BASE, Basic auth with BASELINE_TOSS_SECRET_KEY), one
                           insert of the answer, then a 303 to /orders/<orderId>
  GET  /healthz            {"status": "ok"}

BASELINE_DATABASE_URL names its PostgreSQL database; bench/run.py creates `baseline_hits` and
`baseline_confirms` there.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import requests
from flask import Flask, jsonify, redirect, render_template, request
from flask_sqlalchemy import SQLAlchemy
from jinja2 import DictLoader
from sqlalchemy import BigInteger, DateTime, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.wrappers import Response


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Hit(db.Model):  # type: ignore[name-defined]
    __tablename__ = "baseline_hits"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Confirmation(db.Model):  # type: ignore[name-defined]
    __tablename__ = "baseline_confirms"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(Text, nullable=False)
    payment_key: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    payment: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


TEMPLATES = {
    "base.html": """<!doctype html>
<html lang="ko">
<head><meta charset="utf-8"><title>{% block title %}{% endblock %} — baseline</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body><header><a href="/">baseline</a> <a href="/cart">장바구니</a></header>
<main>{% block content %}{% endblock %}</main>
<footer>bare Flask stack</footer></body></html>
""",
    "page.html": """{% extends "base.html" %}
{% block title %}상품 목록{% endblock %}
{% block content %}
<h1>상품 목록</h1>
<ul class="grid">
  {% for p in items %}
  <li class="product card" data-product-id="{{ p.id }}">
    <h2>{{ p.name }}</h2>
    <p class="muted">{{ p.description }}</p>
    <p class="price">{{ "{:,}원".format(p.price) }}</p>
    <form method="post" action="/cart"><input type="hidden" name="product_id" value="{{ p.id }}">
      <button type="submit">장바구니 담기</button></form>
  </li>
  {% endfor %}
</ul>
{% endblock %}
""",
}

ITEMS = [
    {
        "id": i,
        "name": f"상품 {i}",
        "description": "조용한 타건감의 블루투스 키보드",
        "price": 10_000 + 1_500 * i,
    }
    for i in range(1, 9)
]


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get(
        "BASELINE_DATABASE_URL", "postgresql+psycopg://root@127.0.0.1:5432/postgres"
    )
    # At most 10 connections a worker: the bench's servers share PostgreSQL's 100.
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": 5, "max_overflow": 5}
    app.jinja_loader = DictLoader(TEMPLATES)  # type: ignore[assignment]
    db.init_app(app)
    toss_base = os.environ.get("BASELINE_TOSS_API_BASE", "").rstrip("/")
    toss_key = os.environ.get("BASELINE_TOSS_SECRET_KEY", "")
    toss = requests.Session()
    # As many pooled connections to Toss as confirmations a worker may have in flight.
    toss.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=1000))

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/text")
    def text() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.get("/page")
    def page() -> str:
        return render_template("page.html", items=ITEMS)

    @app.post("/insert")
    def insert() -> tuple[Response, int]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="JSON object required"), 400
        hit = Hit(body=json.dumps(body, ensure_ascii=False), created_at=datetime.now(UTC))
        db.session.add(hit)
        db.session.commit()
        return jsonify(received=True, id=hit.id), 200

    @app.get("/checkout/success")
    def confirm() -> Response | tuple[Response, int]:
        order_id = request.args.get("orderId", "")
        answer = toss.post(
            f"{toss_base}/v1/payments/confirm",
            json={
                "paymentKey": request.args.get("paymentKey", ""),
                "orderId": order_id,
                "amount": request.args.get("amount", type=int),
            },
            auth=(toss_key, ""),
            timeout=(5, 30),
        )
        payment = answer.json()
        if answer.status_code != 200:
            return jsonify(payment), answer.status_code
        db.session.add(
            Confirmation(
                order_id=order_id,
                payment_key=payment["paymentKey"],
                status=payment["status"],
                payment=answer.text,
                created_at=datetime.now(UTC),
            )
        )
        db.session.commit()
        return redirect(f"/orders/{order_id}", 303)

    return app


app = create_app()
