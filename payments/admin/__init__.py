"""The operator console: login, dashboard, orders with their timeline, refunds, webhook inbox."""
