"""Engagement with the emails Tailor sent: opens, clicks and conversions reaching everything that
learns from them (A/B metrics, the person's features, their journeys), whether reported through
the API (`record.py`) or seen by the open pixel and click redirect (`tracker.py`)."""
