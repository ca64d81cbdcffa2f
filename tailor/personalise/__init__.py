"""Personalisation: what each recipient reads. The rules tier, the LLM tiers and their
prompts, the evaluator, brand and tone checks, the HTML allow-list, PII redaction, the daily LLM
budget, per-cluster generation and exemplar retrieval for clusters."""
