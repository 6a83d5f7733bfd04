"""The change feed and what the realtime process needs from the database (realtime/)."""
