"""Retrieval of proven exemplar emails (Qdrant + sentence-transformers) for the executor."""
