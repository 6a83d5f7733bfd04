"""Moderation: reports of objectionable content, their resolution, suspensions."""
