"""Tests of the prompt methods, the description templates and the descriptions."""
