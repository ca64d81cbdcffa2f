"""A/B tests: the decision rule and what a verdict does (rollout, the winner into the corpus)."""
