"""Temporal activities: every agent and external call, with its own timeouts and retries."""
