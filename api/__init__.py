"""Tailor's HTTP API (FastAPI)."""
