"""Running the shop: health and /metrics routes, the CLI, reconciliation, logging, security
headers and rate limits."""
