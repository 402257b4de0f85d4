"""A public URL for a local file, for the APIs that fetch media by URL (Instagram Graph, Threads).

`ImageHost` is the seam: `put` uploads a file and gives its public URL, `remove` deletes it
again once the post is published or has failed (the platform fetched it when the container was
made). Two hosts, chosen by `IMAGE_HOST`: Cloudinary (its signed upload REST API, over a
`BoundedSession`) and an S3-compatible bucket (boto3, in a worker thread, with connect and read
timeouts, one overall deadline and no retries of its own). Imports settings, the publishing
helpers, requests and boto3; never the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

import requests
from pydantic import SecretStr

from pipeline.errors import ConfigError
from pipeline.publish.errors import ContentRejectedError, TransientPublishError, scrub
from pipeline.publish.http import BoundedSession, Limits

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: a host's answers are small JSON or XML
MAX_ANSWER_BYTES = 256 * 1024


@dataclass(frozen=True)
class HostedFile:
    """A file on the host: its public URL and what the host names it by (to remove it)."""

    url: str
    key: str
    #: Cloudinary's resource type of it ("image" or "video"); "" on S3
    kind: str = ""


class ImageHost(Protocol):
    """Where a local file gets a public URL. Raises `TransientPublishError` when the host is
    busy or unreachable and `ContentRejectedError` when it refuses the file or the account."""

    async def put(self, path: Path, mime: str) -> HostedFile: ...

    async def remove(self, hosted: HostedFile) -> None:
        """Delete the file; a failure is logged, never raised (the post is what matters)."""
        ...


def _name(path: Path) -> str:
    """A key no one can guess, that still says what it is: 16 random hex characters and the
    file's suffix (the host's listing must not reveal a run's other files)."""
    return f"mediaoverload/{secrets.token_hex(8)}{path.suffix.lower()}"


class CloudinaryHost:
    """Cloudinary's signed upload (`POST /v1_1/{cloud}/{image|video}/upload`) and destroy
    (`POST /v1_1/{cloud}/{image|video}/destroy`); the signature is the SHA-1 of the sorted
    parameters and the API secret (cloudinary.com/documentation/authentication_signatures)."""

    def __init__(
        self,
        cloud_name: str,
        api_key: str,
        api_secret: SecretStr,
        *,
        api_url: str = "https://api.cloudinary.com",
        timeout: float = 120.0,
        chunk_bytes: int = 20 * 1024 * 1024,
    ) -> None:
        self._chunk = chunk_bytes
        self._cloud = cloud_name
        self._key = api_key
        self._secret = api_secret
        self._root = f"{api_url.rstrip('/')}/v1_1/{cloud_name}"
        self._limits = Limits(deadline=timeout, max_answer_bytes=MAX_ANSWER_BYTES)

    def _signed(self, params: dict[str, str]) -> dict[str, str]:
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        digest = hashlib.sha1(  # noqa: S324 - Cloudinary's signature is SHA-1 by its definition
            (payload + self._secret.get_secret_value()).encode()
        ).hexdigest()
        return {**params, "api_key": self._key, "signature": digest}

    def _call(
        self,
        url: str,
        params: dict[str, str],
        file: tuple[str, IO[bytes] | bytes, str] | None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, object]:
        with BoundedSession(self._limits) as session:
            try:
                response = session.post(
                    url, data=params, files={"file": file} if file else None, headers=headers
                )
            except requests.RequestException as exc:
                raise TransientPublishError(f"Cloudinary: {type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        said = ""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            said = scrub(body["error"].get("message") or "")
        if response.status_code in (420, 429) or response.status_code >= 500:
            raise TransientPublishError(f"Cloudinary: HTTP {response.status_code} {said}")
        if not response.ok or not isinstance(body, dict):
            raise ContentRejectedError(
                f"Cloudinary: HTTP {response.status_code} {said}",
                platform_message=f"the image host refused the file: {said or response.status_code}",
            )
        return body

    def _put_sync(self, path: Path, mime: str) -> HostedFile:
        kind = "video" if mime.startswith("video/") else "image"
        public_id = _name(path).rsplit(".", 1)[0]
        params = self._signed({"public_id": public_id, "timestamp": str(int(time.time()))})
        endpoint = f"{self._root}/{kind}/upload"
        size = path.stat().st_size
        body: dict[str, object] = {}
        with path.open("rb") as handle:
            # Cloudinary's chunked upload: the same call per chunk, one X-Unique-Upload-Id, a
            # Content-Range each; only the last answers with the file (never all in memory)
            upload_id = secrets.token_hex(16)
            for start in range(0, max(size, 1), self._chunk):
                chunk = handle.read(self._chunk)
                end = start + len(chunk) - 1
                headers = {
                    "X-Unique-Upload-Id": upload_id,
                    "Content-Range": f"bytes {start}-{end}/{size}",
                }
                body = self._call(endpoint, params, (path.name, chunk, mime), headers)
        url = body.get("secure_url")
        if not isinstance(url, str) or not url.startswith("http"):
            raise TransientPublishError("Cloudinary: an upload answer without secure_url")
        return HostedFile(url, str(body.get("public_id") or public_id), kind)

    async def put(self, path: Path, mime: str) -> HostedFile:
        return await asyncio.to_thread(self._put_sync, path, mime)

    async def remove(self, hosted: HostedFile) -> None:
        params = self._signed({"public_id": hosted.key, "timestamp": str(int(time.time()))})
        url = f"{self._root}/{hosted.kind or 'image'}/destroy"
        try:
            await asyncio.to_thread(self._call, url, params, None)
        except (TransientPublishError, ContentRejectedError) as exc:
            log.warning("could not remove %s from Cloudinary: %s", hosted.key, exc)


class S3Host:
    """An S3-compatible bucket (AWS S3, Cloudflare R2, Backblaze B2, MinIO) through boto3.

    `public_url` is the bucket's public address (a CDN or the bucket's public domain); without
    it, the URL is a presigned GET valid for `url_seconds`, which needs no public bucket."""

    def __init__(
        self,
        bucket: str,
        *,
        access_key_id: str,
        secret_access_key: SecretStr,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        public_url: str = "",
        timeout: float = 120.0,
        url_seconds: int = 24 * 3600,
    ) -> None:
        import boto3
        from botocore.config import Config

        self._bucket = bucket
        self._public = public_url.rstrip("/")
        self._timeout = timeout
        self._url_seconds = url_seconds
        config = Config(
            region_name=region,
            signature_version="s3v4",
            connect_timeout=min(10.0, timeout),
            read_timeout=timeout,
            retries={"max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
            # a plain signed PUT (no aws-chunked trailer), which every S3-compatible store takes
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key.get_secret_value(),
            config=config,
        )

    def _put_sync(self, path: Path, mime: str) -> HostedFile:
        from botocore.exceptions import BotoCoreError, ClientError

        key = _name(path)
        try:
            with path.open("rb") as handle:
                self._client.put_object(Bucket=self._bucket, Key=key, Body=handle, ContentType=mime)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if status >= 500 or code in ("SlowDown", "RequestTimeout", "ServiceUnavailable"):
                raise TransientPublishError(f"S3 upload: {code or status}") from None
            raise ContentRejectedError(
                f"S3 upload: {code or status}",
                platform_message=f"the image host refused the file ({scrub(code, limit=60)})",
            ) from None
        except BotoCoreError as exc:
            raise TransientPublishError(f"S3 upload: {type(exc).__name__}") from None
        if self._public:
            url = f"{self._public}/{key}"
        else:
            url = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._bucket, "Key": key},
                ExpiresIn=self._url_seconds,
            )
        return HostedFile(url, key)

    async def put(self, path: Path, mime: str) -> HostedFile:
        try:
            async with asyncio.timeout(self._timeout):
                return await asyncio.to_thread(self._put_sync, path, mime)
        except TimeoutError:
            raise TransientPublishError("S3 upload: no answer within the deadline") from None

    def _remove_sync(self, hosted: HostedFile) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=hosted.key)

    async def remove(self, hosted: HostedFile) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.to_thread(self._remove_sync, hosted)
        except (TimeoutError, BotoCoreError, ClientError) as exc:
            log.warning("could not remove %s from the bucket: %s", hosted.key, type(exc).__name__)


def build_image_host(settings: Settings) -> ImageHost | None:
    """The host `IMAGE_HOST` names (None when it is `none`); a missing key is a ConfigError
    naming the variable."""
    kind = settings.image_host
    if kind == "none":
        return None

    def need(name: str, value: str) -> str:
        if not value:
            raise ConfigError(f"IMAGE_HOST={kind} needs {name.upper()} to be set")
        return value

    if kind == "cloudinary":
        secret = settings.cloudinary_api_secret.get_secret_value()
        need("cloudinary_api_secret", secret)
        return CloudinaryHost(
            need("cloudinary_cloud_name", settings.cloudinary_cloud_name),
            need("cloudinary_api_key", settings.cloudinary_api_key),
            settings.cloudinary_api_secret,
            api_url=settings.cloudinary_api_url,
            timeout=settings.image_host_timeout_seconds,
        )
    need("s3_secret_access_key", settings.s3_secret_access_key.get_secret_value())
    return S3Host(
        need("s3_bucket", settings.s3_bucket),
        access_key_id=need("s3_access_key_id", settings.s3_access_key_id),
        secret_access_key=settings.s3_secret_access_key,
        endpoint_url=settings.s3_endpoint_url or None,
        region=settings.s3_region,
        public_url=settings.s3_public_url,
        timeout=settings.image_host_timeout_seconds,
    )
