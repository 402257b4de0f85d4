"""Tests mirror the packages; fakes/ holds servers that speak the real protocols."""
