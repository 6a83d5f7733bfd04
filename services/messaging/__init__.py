"""Reaching people: push devices, the inbox, the push outbox."""
