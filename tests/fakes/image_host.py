"""Image hosts on 127.0.0.1: Cloudinary's upload API and an S3-compatible bucket, each serving
the files it holds at their public URLs (so the fake Graph server can fetch them, as Meta does).

FakeCloudinary: `POST /v1_1/{cloud}/{image|video}/upload` and `/destroy`, checking the api_key
and the SHA-1 signature of the sorted parameters and the secret as Cloudinary does (401 `Invalid
Signature`); the file is then at `secure_url`. FakeS3: path-style `PUT`/`GET`/`DELETE
/{bucket}/{key}`; a request must carry a SigV4 `Authorization` header of the right shape
(`AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/s3/aws4_request, SignedHeaders=..., Signature=64
hex`) with `x-amz-date` and `x-amz-content-sha256`, or a presigned query; a wrong bucket is 404
`NoSuchBucket`, a wrong key id 403 `InvalidAccessKeyId`, in S3's XML.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.fakes.serving import serve

CLOUD = "fox-cloud"
CLOUDINARY_KEY = "123456789012345"
CLOUDINARY_SECRET = "cl-SECRET-abcdef"
BUCKET = "fox-media"
S3_KEY_ID = "AKIAFOXTEST0000001"
S3_SECRET = "s3-SECRET-wJalrXUtnFEMI"
REGION = "eu-central-1"


@dataclass
class FakeCloudinary:
    cloud: str = CLOUD
    api_key: str = CLOUDINARY_KEY
    api_secret: str = CLOUDINARY_SECRET
    port: int = 0
    #: every public URL answers 404 (a host Meta cannot reach)
    unreachable: bool = False
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    chunks: int = 0
    _partial: dict[str, bytearray] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeCloudinary:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1_1/{cloud}/{kind}/{action}", self._api)
        app.router.add_get("/{cloud}/{kind}/upload/{name:.+}", self._serve)
        self._runner, self.port = await serve(app, self.port)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": {"message": message}}, status=status)

    async def _api(self, request: web.Request) -> web.Response:
        kind, action = request.match_info["kind"], request.match_info["action"]
        self.calls.append(f"{kind}/{action}")
        if request.match_info["cloud"] != self.cloud:
            return self._error(401, "Invalid cloud_name " + request.match_info["cloud"])
        fields: dict[str, str] = {}
        data = b""
        mime = "application/octet-stream"
        reader = (
            await request.multipart() if request.content_type.startswith("multipart/") else None
        )
        if reader is not None:
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                    continue
                if part.name == "file":
                    data = bytes(await part.read())
                    mime = part.headers.get("Content-Type", mime)
                else:
                    fields[part.name] = await part.text()
        else:
            fields = {k: str(v) for k, v in (await request.post()).items()}
        if fields.get("api_key") != self.api_key:
            return self._error(401, f"Unknown API key {fields.get('api_key')}")
        signed = {k: v for k, v in fields.items() if k not in ("api_key", "signature", "file")}
        payload = "&".join(f"{k}={signed[k]}" for k in sorted(signed)) + self.api_secret
        if fields.get("signature") != hashlib.sha1(payload.encode()).hexdigest():  # noqa: S324
            return self._error(401, f"Invalid Signature {fields.get('signature')}. String to sign - '{payload[:-len(self.api_secret)]}'.")  # fmt: skip
        public_id = fields.get("public_id", "")
        if action == "destroy":
            found = self.files.pop(public_id, None)
            self.removed.append(public_id)
            return web.json_response({"result": "ok" if found else "not found"})
        if action != "upload" or not data:
            return self._error(400, "Missing required parameter - file")
        ranged = request.headers.get("Content-Range", "")
        if ranged:  # a chunk of a chunked upload: kept until the last one
            match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", ranged)
            upload = request.headers.get("X-Unique-Upload-Id", "")
            held = self._partial.setdefault(upload, bytearray())
            if match is None or not upload or int(match[1]) != len(held):
                return self._error(400, f"Invalid Content-Range {ranged}")
            held += data
            self.chunks += 1
            if len(held) < int(match[3]):
                return web.json_response({"done": False, "bytes": len(held)})
            data = bytes(self._partial.pop(upload))
        self.files[public_id] = (data, mime)
        suffix = "mp4" if kind == "video" else ("png" if data.startswith(b"\x89PNG") else "jpg")
        return web.json_response(
            {
                "public_id": public_id,
                "version": 1700000000,
                "resource_type": kind,
                "format": suffix,
                "bytes": len(data),
                "secure_url": f"{self.url}/{self.cloud}/{kind}/upload/v1700000000/{public_id}.{suffix}",
            }
        )

    async def _serve(self, request: web.Request) -> web.Response:
        name = request.match_info["name"].split("/", 1)[-1].rsplit(".", 1)[0]
        found = self.files.get(name)
        if found is None or self.unreachable:
            return web.Response(status=404)
        return web.Response(body=found[0], content_type=found[1])


_SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/s3/aws4_request,"
    r"\s*SignedHeaders=(?P<headers>[a-z0-9;-]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


def s3_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>4442587FB7D0A2F9</RequestId></Error>"
    )
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


@dataclass
class FakeS3:
    bucket: str = BUCKET
    key_id: str = S3_KEY_ID
    region: str = REGION
    port: int = 0
    #: objects may be read without a signature (a public bucket, or one behind a CDN)
    public_read: bool = False
    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeS3:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{bucket}/{key:.+}", self._object)
        self._runner, self.port = await serve(app, self.port)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _refused(self, request: web.Request) -> web.Response | None:
        query = request.query
        if "X-Amz-Signature" in query:  # a presigned URL
            credential = query.get("X-Amz-Credential", "")
            if query.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" or not credential.startswith(
                self.key_id + "/"
            ):
                return s3_error(403, "AccessDenied", "Access Denied")
            return None
        match = _SIGV4.match(request.headers.get("Authorization", ""))
        if match is None:
            return s3_error(403, "AccessDenied", "Access Denied")
        if match["key"] != self.key_id:
            return s3_error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")  # fmt: skip
        signed = match["headers"].split(";")
        if not {"host", "x-amz-date", "x-amz-content-sha256"} <= set(signed) or not all(
            request.headers.get(h) for h in ("x-amz-date", "x-amz-content-sha256")
        ):
            return s3_error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed.")  # fmt: skip
        if match["region"] != self.region:
            return s3_error(400, "AuthorizationHeaderMalformed", f"the region '{match['region']}' is wrong; expecting '{self.region}'")  # fmt: skip
        return None

    async def _object(self, request: web.Request) -> web.Response:
        bucket, key = request.match_info["bucket"], request.match_info["key"]
        self.calls.append(f"{request.method} {key}")
        if bucket != self.bucket:
            return s3_error(404, "NoSuchBucket", "The specified bucket does not exist")
        refused = self._refused(request)
        if refused is not None and not (self.public_read and request.method == "GET"):
            return refused
        if request.method == "PUT":
            data = await request.read()
            declared = request.headers.get("x-amz-content-sha256", "")
            if declared != "UNSIGNED-PAYLOAD" and declared != hashlib.sha256(data).hexdigest():
                return s3_error(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")  # fmt: skip
            self.objects[key] = (data, request.headers.get("Content-Type", "binary/octet-stream"))
            return web.Response(status=200, headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})  # noqa: S324
        if request.method == "DELETE":
            self.objects.pop(key, None)
            self.removed.append(key)
            return web.Response(status=204)
        if request.method == "GET":
            found = self.objects.get(key)
            if found is None:
                return s3_error(404, "NoSuchKey", "The specified key does not exist.")
            return web.Response(body=found[0], content_type=found[1])
        return s3_error(405, "MethodNotAllowed", "The specified method is not allowed")
