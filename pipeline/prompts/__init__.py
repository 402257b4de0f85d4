"""Prompt methods and the description templates."""
