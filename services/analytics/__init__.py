"""Analytics: app events and the scheduled export."""
