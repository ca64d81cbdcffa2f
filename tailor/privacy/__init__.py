"""Data subjects' rights: erasure and export of one person's data."""
