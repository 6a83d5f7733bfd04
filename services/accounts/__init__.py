"""Accounts: token verification, users, roles."""
