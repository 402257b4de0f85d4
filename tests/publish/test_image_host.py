"""Image hosts give a local file a public URL and remove it again, against fakes over sockets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from pipeline.errors import ConfigError
from pipeline.publish.errors import ContentRejectedError
from pipeline.publish.image_host import CloudinaryHost, S3Host, build_image_host
from pipeline.settings import Settings
from tests.fakes.image_host import (
    CLOUD,
    CLOUDINARY_KEY,
    CLOUDINARY_SECRET,
    REGION,
    S3_KEY_ID,
    S3_SECRET,
    FakeCloudinary,
    FakeS3,
)
from tests.publish.conftest import comfy_png


@pytest.fixture
async def cloudinary() -> AsyncIterator[FakeCloudinary]:
    fake = await FakeCloudinary().start()
    yield fake
    await fake.close()


@pytest.fixture
async def s3() -> AsyncIterator[FakeS3]:
    fake = await FakeS3().start()
    yield fake
    await fake.close()


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


def cloudinary_host(
    fake: FakeCloudinary, secret: str = CLOUDINARY_SECRET, chunk: int = 20 * 1024 * 1024
) -> CloudinaryHost:
    return CloudinaryHost(
        CLOUD, CLOUDINARY_KEY, SecretStr(secret), api_url=fake.url, timeout=10, chunk_bytes=chunk
    )


def s3_host(fake: FakeS3, *, bucket: str = "fox-media", public_url: str = "") -> S3Host:
    return S3Host(
        bucket,
        access_key_id=S3_KEY_ID,
        secret_access_key=SecretStr(S3_SECRET),
        endpoint_url=fake.url,
        region=REGION,
        public_url=public_url,
        timeout=10,
    )


async def test_cloudinary_gives_a_public_url_and_removes_the_file(
    cloudinary: FakeCloudinary, tmp_path: Path
) -> None:
    """A signed upload gives a URL that serves the file's bytes; removing it makes it go."""
    path = comfy_png(tmp_path / "a.png", (64, 64), (1, 2, 3))
    host = cloudinary_host(cloudinary)

    hosted = await host.put(path, "image/png")
    status, body = await fetch(hosted.url)
    await host.remove(hosted)

    assert (status, body) == (200, path.read_bytes())
    assert hosted.key not in cloudinary.files
    assert cloudinary.removed == [hosted.key]
    assert "/a.png" not in hosted.url  # the key is random, not the run's file name
    assert (await fetch(hosted.url))[0] == 404


async def test_a_large_file_goes_to_cloudinary_in_chunks(
    cloudinary: FakeCloudinary, tmp_path: Path
) -> None:
    """A file larger than the chunk size is sent in Content-Range chunks of one upload id and
    arrives whole."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(bytes(range(256)) * 100)  # 25,600 bytes

    hosted = await cloudinary_host(cloudinary, chunk=8192).put(path, "video/mp4")

    assert cloudinary.chunks == 4
    assert cloudinary.files[hosted.key][0] == path.read_bytes()
    assert hosted.kind == "video"


async def test_a_wrong_cloudinary_secret_is_refused_without_showing_it(
    cloudinary: FakeCloudinary, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret Cloudinary does not take fails the upload; the secret is in no message."""
    caplog.set_level(logging.DEBUG)
    path = comfy_png(tmp_path / "a.png", (64, 64), (1, 2, 3))

    with pytest.raises(ContentRejectedError) as caught:
        await cloudinary_host(cloudinary, secret="cl-SECRET-wrong").put(path, "image/png")

    assert "Invalid Signature" in caught.value.user_message
    assert "cl-SECRET" not in str(caught.value) + caught.value.user_message + caplog.text
    assert cloudinary.files == {}


@pytest.mark.parametrize("public", [False, True], ids=["presigned", "public-bucket"])
async def test_s3_gives_a_url_that_serves_the_file_and_removes_it(
    public: bool, s3: FakeS3, tmp_path: Path
) -> None:
    """A SigV4-signed PUT stores the file; its presigned (or public) URL serves the bytes; the
    removal deletes the object."""
    path = comfy_png(tmp_path / "a.png", (64, 64), (1, 2, 3))
    s3.public_read = public
    host = s3_host(s3, public_url=f"{s3.url}/fox-media" if public else "")

    hosted = await host.put(path, "image/png")
    status, body = await fetch(hosted.url)
    await host.remove(hosted)

    assert (status, body) == (200, path.read_bytes())
    assert s3.objects == {}
    assert s3.removed == [hosted.key]
    assert ("X-Amz-Signature" in hosted.url) is not public


async def test_an_unknown_bucket_is_refused_by_name(s3: FakeS3, tmp_path: Path) -> None:
    """A bucket the store does not have fails the upload, naming S3's code, not a secret."""
    path = comfy_png(tmp_path / "a.png", (64, 64), (1, 2, 3))

    with pytest.raises(ContentRejectedError) as caught:
        await s3_host(s3, bucket="other").put(path, "image/png")

    assert "NoSuchBucket" in caught.value.user_message
    assert S3_SECRET not in str(caught.value)


def test_a_host_without_its_keys_names_the_missing_setting(tmp_path: Path) -> None:
    """IMAGE_HOST=s3 without a bucket is a configuration error naming S3_BUCKET."""
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        image_host="s3",
        s3_access_key_id=S3_KEY_ID,
        s3_secret_access_key=SecretStr(S3_SECRET),
    )
    with pytest.raises(ConfigError, match="IMAGE_HOST=s3 needs S3_BUCKET to be set"):
        build_image_host(settings)
    assert build_image_host(Settings(_env_file=None, data_dir=tmp_path)) is None
