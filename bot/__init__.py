"""The Discord adapter: slash commands, the review by reactions, the hourly schedule.

Touches the pipeline only through `bot.services.Services`; never imports strategies or comfy.
"""
