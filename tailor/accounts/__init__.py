"""Accounts: tenants onboarded, API keys with roles, OIDC tokens, and who did what (audit)."""
