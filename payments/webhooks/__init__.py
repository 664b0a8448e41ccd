"""Toss webhooks: the route stores each event (inbox), a worker re-checks it with Toss (worker)."""
