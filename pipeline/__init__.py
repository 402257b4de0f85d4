"""The MediaOverload pipeline: one run walks a Run record from a character to published posts.

Never imports `bot` or `discord`; only `pipeline.wiring` names concrete services.
"""
