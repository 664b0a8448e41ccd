"""Flask checkout paid through Toss Payments.

`create_app` (in `factory.py`) builds the app; `app.py` at the top of the repository exposes
it to `flask --app app` and `gunicorn app:app`. docs/architecture.md walks through the layout.
"""

from .config import ConfigError
from .factory import create_app

__all__ = ["ConfigError", "create_app"]
