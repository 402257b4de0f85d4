"""Fitting media to each platform and publishing to it, exactly once."""
