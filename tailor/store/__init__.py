"""Data access, one module per aggregate. Functions take keyword-only arguments."""
