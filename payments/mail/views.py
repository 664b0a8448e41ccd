"""GET /dev/mail: the e-mail the shop would have sent, while no mail server is configured.

Development only (MAIL_DEV_PAGE, on by default in development and refused in production): the
page shows buyers' addresses and order details to whoever can reach it.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..core.models import MailMessage
from ..extensions import db

bp = Blueprint("mail_dev", __name__, url_prefix="/dev/mail")


@bp.before_request
def _development_only() -> None:
    if not current_app.config.get("MAIL_DEV_PAGE"):
        abort(404)


@bp.get("/")
def outbox() -> str:
    messages = db.session.scalars(
        select(MailMessage).order_by(MailMessage.id.desc()).limit(100)
    ).all()
    return render_template("mail/dev_outbox.html", messages=messages)


# Message ids are 32-bit integers: a larger number names no message (404).
@bp.get("/<int(max=2147483647):message_id>.html")
def html_part(message_id: int) -> Response:
    message = db.session.get(MailMessage, message_id)
    if message is None:
        abort(404)
    # Under the shop's Content-Security-Policy, like every page: the message runs no script.
    return Response(message.html, mimetype="text/html")
