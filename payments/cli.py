"""Commands: seed, admin hash-password, payments worker / reconcile / replay-webhooks."""

from __future__ import annotations

import signal
import threading

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from .extensions import db
from .models import Product

# Demo catalog: (slug, name, price KRW, emoji, colour, description)
DEMO_PRODUCTS = [
    ("wireless-keyboard", "무선 키보드", 39_000, "⌨️", "#e8eefc", "조용한 타건감의 블루투스 키보드"),
    ("ergonomic-mouse", "인체공학 마우스", 25_000, "🖱️", "#fde8e8", "손목이 편한 버티컬 마우스"),
    ("usb-c-hub", "USB-C 허브", 32_500, "🔌", "#e6f6ec", "HDMI·USB 3.0·SD 카드 7in1"),
    ("monitor-stand", "원목 모니터 받침대", 48_000, "🖥️", "#fff4dc", "수납 서랍이 있는 원목 받침대"),
    ("desk-lamp", "LED 스탠드", 29_900, "💡", "#fff9c4", "밝기·색온도 조절 LED 스탠드"),
    ("drip-coffee", "드립백 커피 10개입", 12_000, "☕", "#efe3d9", "에티오피아 예가체프 드립백"),
    ("notebook", "하드커버 노트", 8_500, "📓", "#e3ecf5", "도트 그리드 160쪽"),
    ("tumbler", "보온 텀블러 500ml", 19_800, "🥤", "#e0f4f7", "12시간 보온·보냉"),
]


def seed_catalog() -> tuple[int, int]:
    """Insert or update the demo products by slug; (created, updated)."""
    created = updated = 0
    existing = {p.slug: p for p in db.session.execute(select(Product)).scalars()}
    for slug, name, price, emoji, color, description in DEMO_PRODUCTS:
        product = existing.get(slug)
        if product is None:
            db.session.add(
                Product(
                    slug=slug,
                    name=name,
                    price=price,
                    emoji=emoji,
                    color=color,
                    description=description,
                    active=True,
                )
            )
            created += 1
        else:
            product.name, product.price, product.emoji = name, price, emoji
            product.color, product.description, product.active = color, description, True
            updated += 1
    db.session.commit()
    return created, updated


def register_cli(app: Flask) -> None:
    @app.cli.command("seed")
    def seed() -> None:
        """Load the demo catalog (safe to run again)."""
        created, updated = seed_catalog()
        click.echo(f"catalog seeded: {created} created, {updated} updated")

    admin = click.Group("admin", help="Operator console helpers.")

    @admin.command("hash-password")
    @click.password_option("--password", prompt="Admin password")
    def hash_password(password: str) -> None:
        """Print a hash for ADMIN_PASSWORD_HASH."""
        if len(password) < 10:
            raise click.BadParameter("use at least 10 characters", param_hint="password")
        click.echo(generate_password_hash(password))

    app.cli.add_command(admin)
    app.cli.add_command(payments_group)


payments_group = click.Group("payments", help="Webhook worker and reconciliation.")


@payments_group.command("worker")
@click.option("--once", is_flag=True, help="Process what is due, then exit.")
@click.option("--poll", default=1.0, show_default=True, help="Seconds between empty polls.")
@with_appcontext
def worker(once: bool, poll: float) -> None:
    """Process the webhook inbox; many may run at once against PostgreSQL."""
    from .webhooks import run_once, work, worker_name

    if once:
        total = 0
        while handled := run_once(worker_name()):
            total += handled
        click.echo(f"processed {total} webhook event(s)")
        return
    stop = threading.Event()
    # SIGTERM/SIGINT finish the event in hand, then exit.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    work(current_app._get_current_object(), stop, poll)  # type: ignore[attr-defined]


@payments_group.command("reconcile")
@with_appcontext
def reconcile_cmd() -> None:
    """Settle unknown outcomes, expire stale orders and overdue deposits, prune old bodies."""
    from .reconcile import reconcile

    report = reconcile()
    click.echo(
        f"settled {sum(report.settled.values())} {report.settled}, expired {report.expired}, "
        f"still unknown {report.still_unknown}, refunds {report.refunds}, "
        f"webhook bodies pruned {report.pruned}"
    )


@payments_group.command("replay-webhooks")
@click.option("--failed", is_flag=True, help="Queue every FAILED event again.")
@click.option("--id", "event_id", type=int, help="Queue one event again.")
@with_appcontext
def replay_webhooks(failed: bool, event_id: int | None) -> None:
    """Queue webhook events for processing again."""
    from .webhooks import replay

    if not failed and event_id is None:
        raise click.UsageError("give --failed or --id N")
    count = replay(event_id=event_id, failed=failed)
    if event_id is not None and count == 0:
        raise click.ClickException(
            f"webhook event {event_id} cannot be replayed: unknown, being processed, "
            "or its body was pruned"
        )
    click.echo(f"queued {count} webhook event(s)")
