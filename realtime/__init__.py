"""The realtime WebSocket process (`python -m realtime`): the change feed, live.

A process of its own beside gunicorn (Procfile `realtime:`), asyncio with the `websockets`
library: an idle socket costs buffers, not a thread. See docs/realtime.md.
"""
