"""The marketplace: provider profiles, bookings, messages, reviews."""
