"""Recipient profiles: features updated per event, derived daily, cached in Redis, and loaded
for a send with a fallback when the profile store fails."""
