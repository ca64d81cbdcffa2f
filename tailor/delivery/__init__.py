"""Delivery: composed emails to email providers exactly once. SMTP and HTTP providers,
failover with circuit breakers, the consent-checking claim, rate limits and reconciliation."""
