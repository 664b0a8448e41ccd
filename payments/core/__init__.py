"""The shop's core: tables, statuses, errors and the one order state machine.

Everything above (checkout, shop, webhooks, admin, ops) builds on this package; it imports
none of them.
"""
