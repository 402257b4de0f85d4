"""An async client for ComfyUI: queue API-format workflows, watch them, fetch their outputs.

Imports only the standard library and aiohttp, so it could be published on its own.
"""
