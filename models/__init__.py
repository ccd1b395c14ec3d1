"""Persistence: SQLModel tables, the engine, and repository functions.

Imports only ``kms``. The database is the source of truth (DESIGN §2).
"""
