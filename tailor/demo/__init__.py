"""The demo shop: synthetic contacts, catalog and template, and seeding them into a store."""
