"""The send pipeline: from a send row to a delivered, explained email (personalise, evaluate,
guard, compose, claim with consent, deliver, explain)."""
