"""Journeys: definitions as data, the built-in journeys, and the trigger agent that turns events
into journey starts and exits."""
