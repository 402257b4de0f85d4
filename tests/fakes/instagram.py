"""Instagram's private API as `responses` callbacks, patched into instagrapi's own transport.

instagrapi sends through its curl HTTP/2 adapter (a requests adapter); `responses` replaces
that adapter's `send`, so the real Client builds every request as in production. A fresh login
also reads the password key from `qe/sync/` over instagrapi's plain requests session: mount
`install_public` on a second RequestsMock for that (see `tests/publish/test_instagram_login.py`).

`login_flow` picks how Instagram answers a two-factor account's password: the legacy
`accounts/two_factor_login/`, or a hand-over to the Bloks two-step flow (entrypoint, method
picker, method choice, `verify_code.async`) in one of the three ways instagrapi 3.2's
`login_legacy` follows. The fields instagrapi sends and parses are checked and answered exactly
(instagrapi's mixins/auth.py and mixins/bloks.py); the Bloks screens it does not read carry
only a marker naming the screen.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import struct
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import instagrapi
import pytest
import requests
import responses
from Cryptodome.Cipher import AES, PKCS1_v1_5
from Cryptodome.PublicKey import RSA


@pytest.fixture(autouse=True)
def instant_instagrapi(monkeypatch: pytest.MonkeyPatch) -> None:
    """instagrapi pauses seconds between upload and configure; the fake needs no pause."""
    fast = SimpleNamespace(sleep=lambda _: None, time=time.time, localtime=time.localtime)
    for module in (instagrapi.mixins.photo, instagrapi.mixins.album, instagrapi.mixins.clip,
                   instagrapi.mixins.media):  # fmt: skip
        monkeypatch.setattr(module, "time", fast)


API = "https://i.instagram.com"
#: the host instagrapi sends the CAA (Bloks) login to
CAA = "https://b.i.instagram.com"
USER_ID = 4242
TRANSPORT = "instagrapi.transports._CurlH2Adapter.send"

Reply = tuple[int, dict[str, str], str]

#: the user a login answers with
LOGGED_IN_USER = {"pk": USER_ID, "pk_id": str(USER_ID), "username": "fox.official",
                  "full_name": "Fox", "is_private": False}  # fmt: skip
#: the account access context (`aac`) the CAA login home hands out
ACCESS_CONTEXT = "AACfakeACCESScontext"

#: the key Instagram publishes for password encryption (`ig-set-password-encryption-*`)
PASSWORD_KEY_ID = 41


@functools.cache
def _password_key() -> RSA.RsaKey:
    return RSA.generate(2048)  # made on the first login only: it takes a moment


def totp(secret: str, at: float, *, step: int = 30, digits: int = 6) -> str:
    """RFC 6238 TOTP (HMAC-SHA1) of a base32 secret at a time: what an authenticator shows."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at // step)), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def decrypt_password(enc_password: str) -> str:
    """The password inside instagrapi's `#PWD_INSTAGRAM:4:TIME:PAYLOAD` (RSA + AES-GCM)."""
    _, version, stamp, payload = enc_password.split(":", 3)
    assert version == "4"
    raw = base64.b64decode(payload)
    assert raw[0] == 1
    assert raw[1] == PASSWORD_KEY_ID
    iv, size = raw[2:14], int.from_bytes(raw[14:16], "little")
    rsa_part, rest = raw[16 : 16 + size], raw[16 + size :]
    tag, sealed = rest[:16], rest[16:]
    session_key = PKCS1_v1_5.new(_password_key()).decrypt(rsa_part, None)
    assert session_key is not None, "the password was not encrypted with the published key"
    cipher = AES.new(session_key, AES.MODE_GCM, iv)
    cipher.update(stamp.encode())
    return cipher.decrypt_and_verify(sealed, tag).decode()


def form_of(request: requests.PreparedRequest) -> dict[str, Any]:
    """A signed form's JSON, or a plain form's fields."""
    body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
    form = parse_qs(body)
    if "signed_body" in form:
        return signed_form(request)
    return {k: v[0] for k, v in form.items()}


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
        "comment_count": 0,
        **({"play_count": 0, "view_count": 0} if media_type == 2 else {}),
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
    #: endpoint -> a reply given once instead of the normal answer, or an error the transport
    #: raises instead of answering (a timeout, say)
    faults: dict[str, Reply | Exception] = field(default_factory=dict)
    next_pk: int = 3100000000000000001
    #: the account's password and, when two-factor is on, its authenticator's base32 secret
    password: str = "pw-SECRET-123"
    totp_secret: str | None = None
    #: every login form (accounts/login/) and two-factor form (accounts/two_factor_login/)
    logins: list[dict[str, Any]] = field(default_factory=list)
    two_factor_logins: list[dict[str, Any]] = field(default_factory=list)
    #: (time received, code) of each two-factor code, to compare with the TOTP of that time
    codes: list[tuple[float, str]] = field(default_factory=list)
    #: the session Instagram hands out after a login (the `ig-set-authorization` header)
    sessionid: str = f"{USER_ID}%3AfreshSESSION%3A7"
    #: how a right password of a two-factor account is answered: "legacy"
    #: (`two_factor_required`, then accounts/two_factor_login/) or a hand-over to Bloks:
    #: "bloks" (a `bad_password` answer carrying `two_step_verification_context`),
    #: "invalid_parameters" (the `two_factor_info` carries the context, and
    #: accounts/two_factor_login/ refuses with "Invalid Parameters"), "caa" (a bare
    #: `bad_password`; the CAA login then redirects to the two-step entrypoint with the context)
    login_flow: str = "legacy"
    #: the opaque context of the Bloks two-step flow; None: Instagram leaves it out
    bloks_context: str | None = "AfBloksTwoStepCONTEXT42"
    #: the second factors the account offers in the Bloks method picker; "approval" is a
    #: login approved in the app on another device
    bloks_methods: tuple[str, ...] = ("totp",)
    #: every Bloks and CAA request: (app or action name, its `params`)
    bloks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: the method chosen in the method picker
    bloks_method: str = ""
    #: endpoints (a part of the path) that carry out the next request and then fall silent
    silent: set[str] = field(default_factory=set)
    #: the timeout instagrapi's transport was given for each request that met silence
    deadlines: list[Any] = field(default_factory=list)

    def silence(self, endpoint: str) -> None:
        """The next request to `endpoint` is carried out (a configure makes the post) and
        never answered: the transport gives up at the deadline it was given, as curl does."""
        self.silent.add(endpoint)

    def _fall_silent(self, request: requests.PreparedRequest, path: str) -> None:
        for key in list(self.silent):
            if key in path:
                self.silent.discard(key)
                timeout = getattr(request, "req_kwargs", {}).get("timeout")
                self.deadlines.append(timeout)
                # without a deadline curl would wait for ever; this fake would too
                assert timeout is not None, f"{path}: sent with no deadline"
                # what instagrapi's curl transport raises when curl's total timeout passes
                raise requests.exceptions.Timeout("curl private transport failed (Timeout)")

    def install_public(self, mock: responses.RequestsMock) -> None:
        """The password-key read instagrapi makes over its plain requests session."""
        mock.add_callback("GET", API + "/api/v1/qe/sync/", callback=self._password_key)

    def install(self, mock: responses.RequestsMock) -> None:
        mock.add_callback("POST", API + "/api/v1/launcher/sync/", callback=self._launcher)
        mock.add_callback("POST", API + "/api/v1/accounts/login/", callback=self._login)
        mock.add_callback("POST", API + "/api/v1/accounts/two_factor_login/",
                          callback=self._two_factor)  # fmt: skip
        bloks = re.compile(r"https://(b\.)?i\.instagram\.com/api/v1/bloks/(apps|async_action)/.+")
        mock.add_callback("POST", bloks, callback=self._bloks)
        mock.add_callback("POST", CAA + "/graphql_www", callback=self._usdid)
        mock.add_callback("POST", CAA + "/api/v1/attestation/create_android_keystore/",
                          callback=self._keystore)  # fmt: skip
        mock.add_callback("POST", API + "/api/v1/feed/reels_tray/", callback=self._after_login)
        mock.add_callback("POST", API + "/api/v1/feed/timeline/", callback=self._after_login)
        mock.add_callback("GET", re.compile(API + r"/api/v1/accounts/current_user/"),
                          callback=self._account)  # fmt: skip
        mock.add_callback("GET", re.compile(API + r"/api/v1/feed/user/\d+/"), callback=self._feed)
        mock.add_callback("GET", re.compile(API + r"/api/v1/media/\d+/info/"),
                          callback=self._media_info)  # fmt: skip
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
                fault = self.faults.pop(key)
                if isinstance(fault, Exception):
                    raise fault
                return fault
        return None

    # ------------------------------------------------------------------ login
    def _password_key(self, request: requests.PreparedRequest) -> Reply:
        self.calls.append(("GET", "/api/v1/qe/sync/"))
        pem = _password_key().publickey().export_key()
        headers = {
            "ig-set-password-encryption-key-id": str(PASSWORD_KEY_ID),
            "ig-set-password-encryption-pub-key": base64.b64encode(pem).decode(),
        }
        return 200, headers, json.dumps({"status": "ok"})

    def _launcher(self, request: requests.PreparedRequest) -> Reply:
        self.calls.append(("POST", "/api/v1/launcher/sync/"))
        return 200, {}, json.dumps({"configs": {}, "status": "ok"})

    def _authorization(self) -> str:
        """The `ig-set-authorization` value that carries the session."""
        session = {"ds_user_id": str(USER_ID), "sessionid": self.sessionid,
                   "should_use_header_over_cookies": True}  # fmt: skip
        token = base64.b64encode(json.dumps(session).encode()).decode()
        return f"Bearer IGT:2:{token}"

    def _logged_in(self) -> Reply:
        """A successful login: the user, and the session in `ig-set-authorization`."""
        headers = {"ig-set-authorization": self._authorization(), "ig-set-x-mid": "Z1midFAKE"}
        return 200, headers, json.dumps({"logged_in_user": LOGGED_IN_USER, "status": "ok"})

    def _login(self, request: requests.PreparedRequest) -> Reply:
        self.calls.append(("POST", "/api/v1/accounts/login/"))
        form = form_of(request)
        self.logins.append(form)
        if fault := self._fault("accounts/login/"):
            return fault
        bad_password = {"message": "The password you entered is incorrect. Please try again.",
                        "invalid_credentials": True, "error_type": "bad_password",
                        "status": "fail"}  # fmt: skip
        if form.get("username") != "fox.official" or (
            decrypt_password(str(form["enc_password"])) != self.password
        ):
            return 400, {}, json.dumps(bad_password)
        if self.totp_secret is None:
            return self._logged_in()
        if self.login_flow == "caa":
            return 400, {}, json.dumps(bad_password)
        if self.login_flow == "bloks":
            # instagrapi finds the context anywhere in the answer (`_find_login_response_value`)
            handover = dict(bad_password, totp_two_factor_on=True, sms_two_factor_on=False)
            if self.bloks_context is not None:
                handover["two_step_verification_context"] = self.bloks_context
            return 400, {}, json.dumps(handover)
        info = {  # the shape Instagram answers with when the account has two-factor on
            "pk": USER_ID,
            "username": "fox.official",
            "sms_two_factor_on": False,
            "whatsapp_two_factor_on": False,
            "totp_two_factor_on": True,
            "eligible_for_multiple_totp": False,
            "two_factor_identifier": "TWOfactorID42",
            "show_trusted_device_option": True,
            "is_trusted_device": False,
        }
        if self.login_flow == "invalid_parameters" and self.bloks_context is not None:
            info["two_step_verification_context"] = self.bloks_context
        body = {"message": "", "two_factor_required": True, "two_factor_info": info,
                "phone_verification_settings": {"max_sms_count": 2}, "status": "fail",
                "error_type": "two_factor_required"}  # fmt: skip
        return 400, {}, json.dumps(body)

    def _two_factor(self, request: requests.PreparedRequest) -> Reply:
        self.calls.append(("POST", "/api/v1/accounts/two_factor_login/"))
        form = form_of(request)
        self.two_factor_logins.append(form)
        now = time.time()
        code = str(form.get("verification_code", ""))
        self.codes.append((now, code))
        if fault := self._fault("accounts/two_factor_login/"):
            return fault
        if self.login_flow == "invalid_parameters":
            return 400, {}, json.dumps({"message": "Invalid Parameters", "status": "fail"})
        if form.get("two_factor_identifier") != "TWOfactorID42" or not self._code_valid(code):
            body = {"message": "Please check the security code and try again.",
                    "status": "fail", "error_type": "sms_code_validation_code_invalid"}  # fmt: skip
            return 400, {}, json.dumps(body)
        return self._logged_in()

    def _code_valid(self, code: str) -> bool:
        """The authenticator's code now or one step ago (a step of grace)."""
        assert self.totp_secret is not None
        now = time.time()
        return code in {totp(self.totp_secret, now + drift) for drift in (-30, 0)}

    # ------------------------------------------------------------------ Bloks two-step
    def _bloks(self, request: requests.PreparedRequest) -> Reply:
        """A Bloks app or async action: unsigned form, `params` as JSON, the app's Bloks
        version in `bloks_versioning_id` and `bk_client_context`."""
        parts = urlsplit(str(request.url))
        name = parts.path.rstrip("/").rsplit("/", 1)[1]
        self.calls.append(("POST", parts.path))
        form = form_of(request)
        assert "signed_body" not in form
        version = form["bloks_versioning_id"]
        assert version, "instagrapi sends its Bloks version"
        assert json.loads(form["bk_client_context"])["bloks_version"] == version
        params = json.loads(form["params"])
        self.bloks.append((name, params))
        if fault := self._fault(name):
            return fault
        caa = parts.netloc == "b.i.instagram.com"
        answer = {
            "com.bloks.www.bloks.caa.login.process_client_data_and_redirect": self._caa_home,
            "com.bloks.www.caa.login.oauth.token.fetch.async": self._caa_oauth,
            "com.bloks.www.bloks.caa.login.async.send_login_request": self._caa_send_login,
            "com.bloks.www.two_step_verification.entrypoint": self._entrypoint,
            "com.bloks.www.two_step_verification.method_picker": self._method_picker,
            "com.bloks.www.two_step_verification.method_picker.navigation.async": self._select,
            "com.bloks.www.two_step_verification.verify_code.async": self._verify_code,
        }.get(name)
        assert answer is not None, f"the fake does not know the Bloks screen {name}"
        assert caa == name.startswith(("com.bloks.www.bloks.caa", "com.bloks.www.caa")), name
        return answer(params)

    @staticmethod
    def _layout(action: str = "", data: list[dict[str, Any]] | None = None) -> Reply:
        """A Bloks answer: instagrapi reads `layout.bloks_payload.action` and `.data` only."""
        payload = {"tree": {"screen": "fake"}, "action": action, "data": data or []}
        return 200, {}, json.dumps({"layout": {"bloks_payload": payload}, "status": "ok"})

    def _context_of(self, params: dict[str, Any]) -> Reply | None:
        """Every step names the context Instagram handed over; a wrong one is refused."""
        server = params["server_params"]
        assert server["flow_source"] == "two_factor_login"
        if self.bloks_context is None or server["two_step_verification_context"] != (
            self.bloks_context
        ):
            return 400, {}, json.dumps({"message": "Invalid Parameters", "status": "fail"})
        return None

    def _entrypoint(self, params: dict[str, Any]) -> Reply:
        if refused := self._context_of(params):
            return refused
        assert params["client_input_params"]["device_id"].startswith("android-")
        return self._layout('(bk.action.fake.Screen "two_step_verification.method_picker")')

    def _method_picker(self, params: dict[str, Any]) -> Reply:
        if refused := self._context_of(params):
            return refused
        methods = " ".join(json.dumps(m) for m in self.bloks_methods)
        return self._layout(f"(bk.action.fake.Methods {methods})")

    def _select(self, params: dict[str, Any]) -> Reply:
        if refused := self._context_of(params):
            return refused
        self.bloks_method = str(params["client_input_params"]["selected_method"])
        if self.bloks_method not in self.bloks_methods:
            # the account cannot use that method: the flow shows what it can use instead
            return self._layout(f"(bk.action.fake.Screen {json.dumps(self.bloks_methods[0])})")
        return self._layout(f'(bk.action.fake.Screen "enter_{self.bloks_method}_code")')

    def _verify_code(self, params: dict[str, Any]) -> Reply:
        if refused := self._context_of(params):
            return refused
        entered = params["client_input_params"]
        code = str(entered["code"])
        self.codes.append((time.time(), code))
        method = params["server_params"]["challenge"]
        if (
            method != self.bloks_method
            or method not in self.bloks_methods
            or (method == "totp" and not self._code_valid(code))
        ):
            # the code screen again, with its error; no login in the answer
            return self._layout('(bk.action.fake.Screen "code_entry" "This code isn\'t right")')
        return self._bloks_logged_in()

    def _bloks_logged_in(self) -> Reply:
        """The login a Bloks step embeds in its action: a JSON string holding
        `login_response`, `headers` (with `IG-Set-Authorization`) and `cookies`."""
        login = {
            "login_response": json.dumps({"logged_in_user": LOGGED_IN_USER, "status": "ok"}),
            "headers": json.dumps({"IG-Set-Authorization": self._authorization()}),
            "cookies": f"Set-Cookie: ds_user_id={USER_ID}; Domain=.instagram.com; Path=/; Secure"
            f"\r\nSet-Cookie: sessionid={self.sessionid}; Domain=.instagram.com; Path=/; Secure",
        }
        return self._layout(f"(bk.action.caa.HandleLoginResponse {json.dumps(json.dumps(login))})")

    # ------------------------------------------------------------------ CAA login
    def _usdid(self, request: requests.PreparedRequest) -> Reply:
        """The device key registration (`IGUSDIDRegistrationMutation`) before a CAA login."""
        self.calls.append(("POST", "/graphql_www"))
        form = form_of(request)
        assert form["fb_api_req_friendly_name"] == "IGUSDIDRegistrationMutation"
        return 200, {}, json.dumps({"data": {"xdt_usdid_registration": {"success": True}}})

    def _keystore(self, request: requests.PreparedRequest) -> Reply:
        self.calls.append(("POST", "/api/v1/attestation/create_android_keystore/"))
        body = {"challenge_nonce": "NONCEchallenge", "key_nonce": "NONCEkey", "status": "ok"}
        return 200, {}, json.dumps(body)

    def _caa_home(self, params: dict[str, Any]) -> Reply:
        """The CAA login home: its account access context (`aac`) in the layout's data."""
        node = {"data": {"key": "CAA_ACCOUNT_ACCESS_CONTEXT:aac", "initial": ACCESS_CONTEXT}}
        return self._layout(data=[node])

    def _caa_oauth(self, params: dict[str, Any]) -> Reply:
        assert params["client_input_params"]["aac"] == ACCESS_CONTEXT
        return self._layout()

    def _caa_send_login(self, params: dict[str, Any]) -> Reply:
        entered = params["client_input_params"]
        assert entered["aac"] == ACCESS_CONTEXT
        self.logins.append(entered)
        if entered["contact_point"] != "fox.official" or (
            decrypt_password(str(entered["password"])) != self.password
        ):
            return self._layout('(bk.action.fake.Screen "login_home" "Incorrect password")')
        if self.totp_secret is None:
            return self._bloks_logged_in()
        if self.bloks_context is None:
            return self._layout('(bk.action.fake.Screen "two_step_verification")')
        # the redirect to the two-step entrypoint, its context in the static server params
        keys = '"two_step_verification_context" "flow_source" "device_id"'
        values = f'{json.dumps(self.bloks_context)} "two_factor_login" "android-0"'
        action = (
            '(bk.action.bloks.OpenScreen "com.bloks.www.two_step_verification.entrypoint" '
            '(dkc "server_params" "client_input_params") '
            f"(dkc (f4i (dkc {keys}) (dkc {values}))))"
        )
        return self._layout(action)

    def _after_login(self, request: requests.PreparedRequest) -> Reply:
        self._record(request)
        return 200, {}, json.dumps({"items": [], "tray": [], "status": "ok"})

    # ------------------------------------------------------------------ the account
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
        self._fall_silent(request, path)
        items = list(reversed(self.medias))
        return 200, {}, json.dumps({"items": items, "num_results": len(items), "status": "ok"})

    def _media_info(self, request: requests.PreparedRequest) -> Reply:
        """media/{pk}/info/: the media with its counts; one that is gone answers 400 with
        "Media not found or unavailable", as Instagram does."""
        path = self._record(request)
        if fault := self._fault(path):
            return fault
        pk = int(path.split("/")[-3])
        for media in self.medias:
            if media["pk"] == pk:
                answer = {"items": [media], "num_results": 1, "more_available": False}
                return 200, {}, json.dumps({**answer, "status": "ok"})
        gone = {"message": "Media not found or unavailable", "status": "fail"}
        return 400, {}, json.dumps(gone)

    def _photo(self, request: requests.PreparedRequest) -> Reply:
        path = self._record(request)
        body = request.body if isinstance(request.body, bytes) else b""
        self.photo_uploads.append(body)
        self._fall_silent(request, path)
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
        self._fall_silent(request, path)
        return 200, {}, json.dumps({"media": media, "status": "ok"})
