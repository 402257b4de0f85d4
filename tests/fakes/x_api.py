"""X's API over real sockets: an aiohttp app answering from `tests.fakes.x.FakeX`.

Two ways in. `url` is the app itself, over plain HTTP, for `X_API_URL` (every X call goes
there). And for a child process, a CONNECT proxy that terminates TLS for X's hosts: given `env`
(HTTPS_PROXY, REQUESTS_CA_BUNDLE) it reaches `https://api.x.com` through this proxy, which
presents a certificate from a CA made for the test. Any other host is refused, so nothing
leaves the machine. The code under test runs unchanged: requests honours those variables.

Hostile modes, per call (method and path): `hold_answers` carries the call out and keeps the
answer (the post is made, then silence); `trickle` answers a byte at a time; `flood` answers
without end, fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from pathlib import Path
from types import TracebackType
from typing import Self

import requests
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.publish.credentials import env_prefix
from tests.fakes.serving import serve
from tests.fakes.x import FakeX

#: the hosts the proxy answers for; a CONNECT to any other is refused with 403
X_HOSTS = ("api.x.com", "api.twitter.com", "upload.twitter.com")

#: the keys FakeX expects in every OAuth 1.0a signature (consumer key, token) and their secrets
CREDENTIALS = {
    "API_KEY": "ck-public",
    "API_SECRET": "cs-SECRET-consumer",
    "ACCESS_TOKEN": "42-at-token",
    "ACCESS_SECRET": "as-SECRET-access",
}


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA (its PEM for REQUESTS_CA_BUNDLE) and a server certificate for X_HOSTS it signed."""
    now = dt.datetime.now(dt.UTC)

    def build(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None
    ) -> x509.CertificateBuilder:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        build("MediaOverload test CA", ca_key, None)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        build(X_HOSTS[0], key, ca.subject)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(h) for h in X_HOSTS]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


class FakeXApi:
    """`async with FakeXApi(tmp_path) as x:` give a child process `x.env` and
    `x.credentials_env(name)`; what it posted is in `x.state` (a FakeX)."""

    def __init__(self, folder: Path, state: FakeX | None = None) -> None:
        self.folder = folder
        self.state = state or FakeX()
        #: CONNECT targets refused (a host that is not X's)
        self.refused: list[str] = []
        #: assertion failures inside FakeX (a badly signed or malformed call), answered 400
        self.errors: list[str] = []
        self._runner: web.AppRunner | None = None
        self._proxy: asyncio.Server | None = None
        self._app_port = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: (method, path) of the calls `hold_answers` carried out and kept the answer of
        self.held: list[tuple[str, str]] = []
        self._holding: tuple[str, str] | None = None
        self._released = asyncio.Event()
        #: (method, path) -> "trickle" or "flood": how that call's answer is sent
        self._modes: dict[tuple[str, str], str] = {}
        self.trickle_every = 0.05
        #: (method, path, how) of each answer a hostile mode started, and bytes it sent
        self.hostile: list[tuple[str, str, str]] = []
        self.sent_hostile = 0
        #: answers whose caller hung up before the end (a hostile one, cut off by a deadline)
        self.cut_off: list[tuple[str, str]] = []
        self._cut = asyncio.Event()

    def hold_answers(self, method: str, path: str) -> None:
        """Carry out `method path` calls as X does, but keep their answers until `release`:
        the post is online while its caller never hears so (killed, or cut off)."""
        self._holding = (method, path)
        self._released.clear()

    def release(self) -> None:
        self._holding = None
        self._released.set()

    def trickle(self, method: str, path: str, *, every: float = 0.05) -> None:
        """Carry out `method path` calls, then send the answer one byte every `every` seconds,
        behind a Content-Length of a few hundred KB: it would take hours to arrive."""
        self._modes[(method, path)] = "trickle"
        self.trickle_every = every

    def flood(self, method: str, path: str) -> None:
        """Carry out `method path` calls, then answer 200 with a JSON body that never ends,
        as fast as the caller reads it."""
        self._modes[(method, path)] = "flood"

    async def until_cut_off(self) -> None:
        """Wait until a caller hung up on an answer (its deadline or cap ended the call)."""
        await self._cut.wait()

    @property
    def url(self) -> str:
        """The fake over plain HTTP, for X_API_URL."""
        assert self._runner is not None, "use FakeXApi as an async context manager"
        return f"http://127.0.0.1:{self._app_port}"

    @property
    def env(self) -> dict[str, str]:
        """What a child process needs to reach this fake (and only it) for X's hosts."""
        assert self._proxy is not None, "use FakeXApi as an async context manager"
        port = self._proxy.sockets[0].getsockname()[1]
        proxy = f"http://127.0.0.1:{port}"
        return {
            "HTTPS_PROXY": proxy,
            "https_proxy": proxy,
            "REQUESTS_CA_BUNDLE": str(self.folder / "ca.pem"),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    @staticmethod
    def credentials_env(name: str) -> dict[str, str]:
        """The variables of a character's `credentials: NAME` that this fake accepts."""
        prefix = env_prefix(name)
        return {f"{prefix}_{key}": value for key, value in CREDENTIALS.items()}

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        self.folder.mkdir(parents=True, exist_ok=True)
        _, cert, key = await asyncio.to_thread(_certificates, self.folder)
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(cert, key)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner, self._app_port = await serve(app, access_log=None)
        self._proxy = await asyncio.start_server(self._tunnel, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()  # a held answer goes out, so its handler ends with the server
        if self._proxy is not None:
            self._proxy.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._proxy is not None:
            await self._proxy.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ HTTP (after TLS)
    async def _answer(self, request: web.Request) -> web.StreamResponse:
        host = request.headers.get("Host", X_HOSTS[0]).split(":")[0]
        prepared = requests.Request(
            request.method,
            f"https://{host}{request.path_qs}",
            headers=dict(request.headers),
            data=await request.read(),
        ).prepare()
        try:
            status, headers, body = self.state.answer(prepared)
        except AssertionError as exc:
            self.errors.append(f"{request.method} {request.path}: {exc}")
            problem = {"title": "Invalid Request", "detail": str(exc) or "rejected by the fake"}
            return web.json_response({"errors": [problem], **problem}, status=400)
        call = (request.method, request.path)
        if self._holding == call:
            self.held.append(call)
            await self._released.wait()
        how = self._modes.get(call)
        if how is not None:
            return await self._hostile(request, how)
        return web.Response(
            status=status, headers=headers, text=body, content_type="application/json"
        )

    async def _hostile(self, request: web.Request, how: str) -> web.StreamResponse:
        """Send an answer that never completes, until the caller hangs up."""
        call = (request.method, request.path)
        self.hostile.append((*call, how))
        answer = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        if how == "trickle":
            answer.content_length = 512 * 1024
        await answer.prepare(request)
        try:
            if how == "trickle":
                await answer.write(b"{")
                while True:
                    await asyncio.sleep(self.trickle_every)
                    await answer.write(b" ")
                    self.sent_hostile += 1
            await answer.write(b'{"data": ["')
            chunk = b"x" * 65536
            while True:
                await answer.write(chunk)
                self.sent_hostile += len(chunk)
        except (ConnectionError, RuntimeError):
            self.cut_off.append(call)
            self._cut.set()
        return answer

    # ------------------------------------------------------------------ the proxy
    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            host = target.rsplit(":", 1)[0]
            if method != "CONNECT" or host not in X_HOSTS:
                self.refused.append(f"{method} {target}")
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await writer.start_tls(self._tls)
            app_reader, app_writer = await asyncio.open_connection("127.0.0.1", self._app_port)
            try:
                await asyncio.gather(
                    _pipe(reader, app_writer), _pipe(app_reader, writer), return_exceptions=True
                )
            finally:
                app_writer.close()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
            pass  # a client that hung up mid-handshake; nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
            self._tasks.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if sink.can_write_eof():
                sink.write_eof()
