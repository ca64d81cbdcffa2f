"""Tailor: durable, AI-personalised email for marketers, built on Temporal."""

__version__ = "0.1.0"
