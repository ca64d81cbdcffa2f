"""LLM generation: versioned prompts, prices, and the request/response shapes."""
