"""Local stand-ins for external services, for the demo, benchmarks and tests (loopback only)."""
