"""Starting a fake's aiohttp app on 127.0.0.1, the one way every fake here does it."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def serve(app: web.Application, port: int = 0, **options: Any) -> tuple[web.AppRunner, int]:
    """Serve `app` on 127.0.0.1:`port` (0: a free port; a given one may be taken again at
    once, so a fake that went down comes back at the same URL). Returns the runner, to clean
    up, and the port. `options` go to `web.AppRunner`."""
    runner = web.AppRunner(app, **options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner, int(runner.addresses[0][1])
