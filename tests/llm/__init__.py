"""Tests of the language and vision model providers, the fallback chain and answer parsing."""
