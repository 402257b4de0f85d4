"""Benchmarks: each prints its figures and ends with one line of key=value pairs."""
