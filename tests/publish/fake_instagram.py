"""Instagram's private API as `responses` callbacks, patched into instagrapi's own transport.

instagrapi sends through its curl HTTP/2 adapter (a requests adapter); `responses` replaces
that adapter's `send`, so the real Client builds every request as in production.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import requests
import responses

API = "https://i.instagram.com"
USER_ID = 4242
TRANSPORT = "instagrapi.transports._CurlH2Adapter.send"

Reply = tuple[int, dict[str, str], str]


def signed_form(request: requests.PreparedRequest) -> dict[str, Any]:
    """The JSON inside instagrapi's `signed_body=SIGNATURE.{json}` form."""
    body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
    form = parse_qs(body)
    signed = form["signed_body"][0]
    return dict(json.loads(signed.split(".", 1)[1]))


def media_payload(pk: int, caption: str, media_type: int = 1) -> dict[str, Any]:
    user = {"pk": str(USER_ID), "username": "fox.official", "full_name": "Fox"}
    return {
        "pk": pk,
        "id": f"{pk}_{USER_ID}",
        "code": f"C0de{pk}",
        "taken_at": int(time.time()),
        "media_type": media_type,
        "product_type": "clips" if media_type == 2 else "feed",
        "user": user,
        "like_count": 0,
        "caption": {"text": caption},
        "usertags": {"in": []},
    }


@dataclass
class FakeInstagram:
    medias: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    photo_uploads: list[bytes] = field(default_factory=list)
    video_uploads: list[bytes] = field(default_factory=list)
    configures: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: endpoint -> a reply given once instead of the normal answer
    faults: dict[str, Reply] = field(default_factory=dict)
    next_pk: int = 3100000000000000001

    def install(self, mock: responses.RequestsMock) -> None:
        mock.add_callback("GET", re.compile(API + r"/api/v1/accounts/current_user/"),
                          callback=self._account)  # fmt: skip
        mock.add_callback("GET", re.compile(API + r"/api/v1/feed/user/\d+/"), callback=self._feed)
        mock.add_callback("POST", re.compile(API + r"/rupload_igphoto/.+"), callback=self._photo)
        mock.add_callback("GET", re.compile(API + r"/rupload_igvideo/.+"), callback=self._init)
        mock.add_callback("POST", re.compile(API + r"/rupload_igvideo/.+"), callback=self._video)
        mock.add_callback("POST", re.compile(API + r"/upload_settings/.+"), callback=self._ok)
        mock.add_callback("POST", re.compile(API + r"/api/v1/media/configure"),
                          callback=self._configure)  # fmt: skip

    def _record(self, request: requests.PreparedRequest) -> str:
        path = urlsplit(str(request.url)).path
        self.calls.append((str(request.method), path))
        assert str(request.headers.get("Authorization", "")).startswith("Bearer IGT:2:")
        return path

    def _fault(self, path: str) -> Reply | None:
        for key in list(self.faults):
            if key in path:
                return self.faults.pop(key)
        return None

    def _account(self, request: requests.PreparedRequest) -> Reply:
        path = self._record(request)
        if fault := self._fault(path):
            return fault
        user = {
            "pk": USER_ID,
            "username": "fox.official",
            "full_name": "Fox",
            "is_private": False,
            "profile_pic_url": "https://instagram.example/pic.jpg",
            "is_verified": False,
            "is_business": False,
        }
        return 200, {}, json.dumps({"user": user, "status": "ok"})

    def _feed(self, request: requests.PreparedRequest) -> Reply:
        path = self._record(request)
        if fault := self._fault(path):
            return fault
        items = list(reversed(self.medias))
        return 200, {}, json.dumps({"items": items, "num_results": len(items), "status": "ok"})

    def _photo(self, request: requests.PreparedRequest) -> Reply:
        self._record(request)
        body = request.body if isinstance(request.body, bytes) else b""
        self.photo_uploads.append(body)
        params = json.loads(str(request.headers["X-Instagram-Rupload-Params"]))
        return 200, {}, json.dumps({"upload_id": params["upload_id"], "status": "ok"})

    def _init(self, request: requests.PreparedRequest) -> Reply:
        self._record(request)
        return 200, {}, json.dumps({"offset": 0})

    def _video(self, request: requests.PreparedRequest) -> Reply:
        self._record(request)
        body = request.body if isinstance(request.body, bytes) else b""
        self.video_uploads.append(body)
        return 200, {}, json.dumps({"status": "ok"})

    def _ok(self, request: requests.PreparedRequest) -> Reply:
        self._record(request)
        return 200, {}, json.dumps({"status": "ok"})

    def _configure(self, request: requests.PreparedRequest) -> Reply:
        path = self._record(request)
        if fault := self._fault(path):
            return fault
        form = signed_form(request)
        self.configures.append((path, form))
        media_type = 8 if "sidecar" in path else 2 if "clips" in path else 1
        media = media_payload(self.next_pk, unquote_plus(form["caption"]), media_type)
        self.next_pk += 1
        self.medias.append(media)
        return 200, {}, json.dumps({"media": media, "status": "ok"})
