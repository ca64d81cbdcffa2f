"""Consent beyond the ledger's rows: what a revocation promises, and how it keeps it."""
