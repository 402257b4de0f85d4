"""Tests of the comfy package against the fake ComfyUI server."""
