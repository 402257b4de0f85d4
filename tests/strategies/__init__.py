"""Tests of the strategies package: what each declares, and the one definition of media kinds."""
