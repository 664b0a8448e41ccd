"""Paying an order: the widget page, Toss's redirects, the JSON API, and the confirmation.

Follow one payment: `routes.success` → `confirm.confirm_payment` → `payments.toss` (Toss's
confirm) → `settle.apply_payment` → `payments.core.orders.transition`.
"""
