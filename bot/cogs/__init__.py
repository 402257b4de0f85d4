"""Discord cogs: generate, schedule, admin."""
