"""Commands: seed, admin hash-password, payments worker / reconcile / replay-webhooks."""

from __future__ import annotations

import signal
import threading

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from werkzeug.security import generate_password_hash

from ..mail import sender as mail_sender
from ..shop.catalog import seed_catalog
from ..webhooks.worker import replay, run_once, work, worker_name
from .reconcile import reconcile


def register_cli(app: Flask) -> None:
    app.cli.add_command(seed)
    app.cli.add_command(admin_group)
    app.cli.add_command(payments_group)


@click.command("seed")
@with_appcontext
def seed() -> None:
    """Load the demo catalog (safe to run again)."""
    created, updated = seed_catalog()
    click.echo(f"catalog seeded: {created} created, {updated} updated")


admin_group = AppGroup("admin", help="Operator console helpers.")


@admin_group.command("hash-password")
@click.password_option("--password", prompt="Admin password")
def hash_password(password: str) -> None:
    """Print a hash for ADMIN_PASSWORD_HASH."""
    if len(password) < 10:
        raise click.BadParameter("use at least 10 characters", param_hint="password")
    click.echo(generate_password_hash(password))


payments_group = AppGroup("payments", help="Webhook worker and reconciliation.")


@payments_group.command("worker")
@click.option("--once", is_flag=True, help="Process what is due, then exit.")
@click.option("--poll", default=1.0, show_default=True, help="Seconds between empty polls.")
def worker(once: bool, poll: float) -> None:
    """Process the webhook inbox; many may run at once against PostgreSQL."""
    if once:
        total = 0
        while handled := run_once(worker_name()):
            total += handled
        sent = 0
        # The long-running loop sends the buyers' e-mail too; a cron-style run must as well.
        while drained := mail_sender.drain():
            sent += drained
        click.echo(f"processed {total} webhook event(s), {sent} e-mail(s)")
        return
    stop = threading.Event()
    # SIGTERM/SIGINT finish the event in hand, then exit.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    work(current_app._get_current_object(), stop, poll)  # type: ignore[attr-defined]


@payments_group.command("reconcile")
def reconcile_cmd() -> None:
    """Settle unknown outcomes, expire stale orders and overdue deposits, prune old bodies."""
    report = reconcile()
    click.echo(
        f"settled {sum(report.settled.values())} {report.settled}, expired {report.expired}, "
        f"still unknown {report.still_unknown}, refunds {report.refunds}, "
        f"webhook bodies pruned {report.pruned}"
    )


@payments_group.command("replay-webhooks")
@click.option("--failed", is_flag=True, help="Queue every FAILED event again.")
@click.option("--id", "event_id", type=int, help="Queue one event again.")
def replay_webhooks(failed: bool, event_id: int | None) -> None:
    """Queue webhook events for processing again."""
    if not failed and event_id is None:
        raise click.UsageError("give --failed or --id N")
    count = replay(event_id=event_id, failed=failed)
    if event_id is not None and count == 0:
        raise click.ClickException(
            f"webhook event {event_id} cannot be replayed: unknown, being processed, "
            "or its body was pruned"
        )
    click.echo(f"queued {count} webhook event(s)")
