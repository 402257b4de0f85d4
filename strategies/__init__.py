"""Generation strategies: how descriptions become media on ComfyUI.

Never imports `pipeline`: what a strategy needs it declares as a Protocol in `strategies.base`.
"""
