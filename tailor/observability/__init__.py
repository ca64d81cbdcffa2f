"""What Tailor tells the people who run it: metrics (``metrics.py``), in-memory, no I/O."""
