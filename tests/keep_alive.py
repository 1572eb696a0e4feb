"""Keep-alive of the services' HTTP servers (ingestion, inference, console), read off a raw
connection.

A client reuses an idle connection for up to its own expiry (httpx: 5 s). A server that closes
it at the same moment (uvicorn's default keep-alive: 5 s) races the client's next request on
it, which then fails with a read error. `serves_after_idle` asks ``/healthz`` on one
connection, leaves it idle, and asks again on the same connection.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: admuse\r\n\r\n"


async def serves_after_idle(url: str, idle_s: float = 6.0) -> None:
    """Raise unless one connection to ``url`` answers /healthz, idles ``idle_s`` and answers
    again (the server has not closed it meanwhile)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)

    async def healthz() -> None:
        writer.write(REQUEST)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await asyncio.wait_for(reader.readexactly(length), 5)

    try:
        await healthz()
        # Idle: nothing may arrive, and the server must not end the connection before the
        # deadline (a close ends this wait at once, with b"").
        try:
            early = await asyncio.wait_for(reader.read(1), idle_s)
        except TimeoutError:
            early = None
        assert early is None, f"the server ended an idle connection within {idle_s} s: {early!r}"
        await healthz()
    finally:
        writer.close()
