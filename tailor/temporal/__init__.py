"""The client side of Temporal: connecting, search attributes, schedules, and the controls that
start, signal and query campaigns, journeys and A/B tests."""
