"""Entry point: `flask --app app …` and `gunicorn app:app`."""

from payments import create_app

app = create_app()
