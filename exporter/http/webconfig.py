"""Prometheus exporter-toolkit web config (`--web-config-file`): TLS and basic auth for /metrics.

The file format and its strictness follow exporter-toolkit (`web/tls_config.go`,
`web/handler.go`), so the file written for node_exporter works here. What Python's `ssl`
cannot express is refused at load with a readable reason, never silently weakened:

- `cert_file`, `key_file`, `client_ca_file`: loaded at start, so errors surface then; relative
  paths resolve against the config file's directory.
- `client_auth_type`: `NoClientCert` -> CERT_NONE, `VerifyClientCertIfGiven` -> CERT_OPTIONAL,
  `RequireAndVerifyClientCert` -> CERT_REQUIRED (both need `client_ca_file`).
  `RequestClientCert` -> CERT_NONE: Python cannot ask for a certificate without verifying it,
  and an unverified certificate admits the same clients as none.
  `RequireAnyClientCert` is refused: Python cannot require a certificate without verifying it.
- `min_version`, `max_version`: mapped; `TLS10` and `TLS11` refused (deprecated in Python's ssl).
- `cipher_suites`: TLS 1.2 suites mapped to OpenSSL names; TLS 1.3 names accepted without
  effect, as in Go. `prefer_server_cipher_suites`: mapped to OP_CIPHER_SERVER_PREFERENCE.
- `curve_preferences`: names checked, then ignored (Python's ssl sets one curve, not a list).
- `http_server_config.http2`: accepted, ignored (aiohttp serves HTTP/1.1).
- inline `cert`/`key`/`client_ca`, `client_allowed_sans`, `rate_limit`: refused as unsupported.

The file is read once: a restart applies changes, including renewed certificates
(exporter-toolkit re-reads them per connection; this does not).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import re
import secrets
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import bcrypt
import yaml
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.domain import ExporterError

log = logging.getLogger(__name__)

CHALLENGE = 'Basic realm="aep-flow-exporter", charset="UTF-8"'
# Successful verifications kept; only right credentials get in, so real use needs a handful.
MAX_CACHED_VERIFICATIONS = 1024

PasswordCheck = Callable[[bytes, bytes], bool]

_CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# exporter-toolkit keeps "RequireClientCert" as an alias of RequireAnyClientCert.
_CLIENT_AUTH_REFUSED = ("RequireAnyClientCert", "RequireClientCert")
_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_TLS_VERSIONS_REFUSED = ("TLS10", "TLS11")
# Go's tls.CipherSuites() names for TLS 1.2 and before, as OpenSSL spells them.
_TLS12_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites cannot be chosen in Go's crypto/tls nor in Python's ssl.
_TLS13_CIPHERS = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)
_CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")
# exporter-toolkit allows only these headers, some only with these values (web/handler.go).
_EXTRA_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
# $2a$, $2b$ and $2y$ name the same algorithm (2y is PHP's and htpasswd's spelling).
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}")


class WebConfigError(ExporterError):
    """The web config file is invalid; the message is one line naming the file and the problem."""


class _Section(BaseModel):
    """Strict like exporter-toolkit's yaml.UnmarshalStrict: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # exporter-toolkit fields not implemented here, with what to do instead.
    unsupported_fields: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValueError("must be a mapping")  # noqa: TRY004 - pydantic wants ValueError
        for name, hint in cls.unsupported_fields.items():
            if name in data:
                raise ValueError(f"{name} is not supported by aep-flow-exporter; {hint}")
        # `key:` with no value means unset, as in Go's yaml.
        return {key: value for key, value in data.items() if value is not None}


class _TLSServerConfig(_Section):
    unsupported_fields: ClassVar[dict[str, str]] = {
        "cert": "use cert_file",
        "key": "use key_file",
        "client_ca": "use client_ca_file",
        "client_allowed_sans": "use a client CA that signs only the allowed clients",
    }

    cert_file: StrictStr = ""
    key_file: StrictStr = ""
    client_auth_type: StrictStr = ""
    client_ca_file: StrictStr = ""
    min_version: StrictStr = "TLS12"
    max_version: StrictStr = "TLS13"
    cipher_suites: tuple[StrictStr, ...] = ()
    curve_preferences: tuple[StrictStr, ...] = ()
    prefer_server_cipher_suites: StrictBool = True

    @field_validator("client_auth_type")
    @classmethod
    def _client_auth(cls, value: str) -> str:
        if value in _CLIENT_AUTH_REFUSED:
            raise ValueError(
                f"{value} is not supported: Python's ssl cannot require a client certificate "
                "without verifying it; use RequireAndVerifyClientCert with client_ca_file"
            )
        if value not in _CLIENT_AUTH:
            raise ValueError(
                f"invalid ClientAuth: {value} (one of {', '.join(list(_CLIENT_AUTH)[1:])})"
            )
        return value

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value in _TLS_VERSIONS_REFUSED:
            raise ValueError(
                f"{value} is not supported (deprecated in Python's ssl); use TLS12 or TLS13"
            )
        if value not in _TLS_VERSIONS:
            raise ValueError(f"unknown TLS version: {value}")
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _ciphers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in _TLS12_CIPHERS and name not in _TLS13_CIPHERS:
                raise ValueError(f"unknown cipher: {name}")
        return value

    @field_validator("curve_preferences")
    @classmethod
    def _curves(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in _CURVES:
                raise ValueError(f"unknown curve: {name}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> _TLSServerConfig:
        if _TLS_VERSIONS[self.min_version] > _TLS_VERSIONS[self.max_version]:
            raise ValueError(
                f"min_version {self.min_version} is above max_version {self.max_version}"
            )
        if not self.enabled:
            return self
        if not self.cert_file:
            raise ValueError("missing cert_file")
        if not self.key_file:
            raise ValueError("missing key_file")
        verifies = _CLIENT_AUTH[self.client_auth_type] != ssl.CERT_NONE
        if verifies and not self.client_ca_file:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        if self.client_ca_file and self.client_auth_type in ("", "NoClientCert"):
            raise ValueError("client_ca_file is set without a client_auth_type that uses it")
        return self

    @property
    def enabled(self) -> bool:
        """Whether TLS is on; exporter-toolkit's TLSConfig.IsEnabled."""
        return bool(self.cert_file or self.key_file or self.client_ca_file or self.client_auth_type)


class _HTTPServerConfig(_Section):
    http2: StrictBool = True
    headers: dict[StrictStr, StrictStr] = {}

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, given in value.items():
            if name not in _EXTRA_HEADERS:
                raise ValueError(f"HTTP header {name!r} can not be configured")
            allowed = _EXTRA_HEADERS[name]
            if allowed and given not in allowed:
                raise ValueError(
                    f"invalid value for {name}. "
                    f"Expected one of: {list(allowed)}, but got: {given!r}"
                )
        return value


class _WebConfigFile(_Section):
    unsupported_fields: ClassVar[dict[str, str]] = {
        "rate_limit": "rate-limit in front of the exporter",
    }

    tls_server_config: _TLSServerConfig = _TLSServerConfig()
    http_server_config: _HTTPServerConfig = _HTTPServerConfig()
    basic_auth_users: dict[StrictStr, StrictStr] = {}

    @field_validator("basic_auth_users")
    @classmethod
    def _users(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            match = _BCRYPT_HASH.fullmatch(hashed)
            if match is None or not 4 <= int(match["cost"]) <= 31:
                # Name the user, never echo the hash.
                raise ValueError(
                    f"password of user {user!r} is not a bcrypt hash "
                    "($2a$, $2b$ or $2y$, a cost of 04 to 31, then 53 characters)"
                )
        return value


@dataclass(frozen=True)
class TLSSettings:
    """The TLS part of a web config, paths resolved, mapped to Python's ssl."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None
    verify_mode: ssl.VerifyMode
    minimum_version: ssl.TLSVersion
    maximum_version: ssl.TLSVersion
    # OpenSSL cipher string for TLS 1.2; None keeps OpenSSL's defaults.
    ciphers: str | None
    prefer_server_ciphers: bool


@dataclass(frozen=True)
class WebConfig:
    """A loaded web config: the metrics listener's TLS settings, users and extra headers."""

    path: Path
    tls: TLSSettings | None = None
    # user name -> bcrypt hash ($2y$ normalised to $2b$)
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def auth_enabled(self) -> bool:
        """Whether requests need basic-auth credentials."""
        return bool(self.users)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server SSLContext with the certificate loaded; None without tls_server_config."""
        if self.tls is None:
            return None
        return _server_context(self.path, self.tls)

    def middleware(self, check_password: PasswordCheck = bcrypt.checkpw) -> Middleware:
        """Basic auth (when users are configured) and the extra headers, for every response.

        `check_password(password, hash)` is the bcrypt verification; tests wrap it to count calls.
        Each call makes a fresh verification cache, so build one per listener.
        """
        gate = _BasicAuthGate(self.users, check_password) if self.users else None
        headers = dict(self.headers)

        @web.middleware
        async def web_config(request: web.Request, handler: Handler) -> web.StreamResponse:
            try:
                if gate is not None and not await gate.admits(request):
                    raise web.HTTPUnauthorized(headers={hdrs.WWW_AUTHENTICATE: CHALLENGE})
                response = await handler(request)
            except web.HTTPException as exc:
                # On refusals too, as exporter-toolkit sets the headers before checking auth.
                exc.headers.update(headers)
                raise
            if not response.prepared:
                response.headers.update(headers)
            return response

        return web_config


def load_web_config(path: Path) -> WebConfig:
    """Read, validate and load a web config file; WebConfigError if anything is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WebConfigError(f"web config {path}: cannot read: {exc.strerror}") from None
    try:
        document = yaml.load(raw, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise WebConfigError(f"web config {path}: {_describe_yaml_error(exc)}") from None
    try:
        parsed = _WebConfigFile.model_validate(document)
    except ValidationError as exc:
        raise WebConfigError(f"web config {path}: {_describe_validation_error(exc)}") from None

    config = WebConfig(
        path=path,
        tls=_tls_settings(path.parent, parsed.tls_server_config),
        users={
            user: re.sub(r"^\$2y\$", "$2b$", hashed).encode("ascii")
            for user, hashed in parsed.basic_auth_users.items()
        },
        headers=dict(parsed.http_server_config.headers),
    )
    config.ssl_context()  # the certificate, key and CA fail here, at start, not at first scrape
    if parsed.tls_server_config.curve_preferences:
        log.warning(
            "web config setting ignored: path=%s field=curve_preferences "
            "reason=Python's ssl cannot set a curve preference list",
            path,
        )
    if config.auth_enabled and config.tls is None:
        log.warning("basic auth without TLS sends passwords in clear text: path=%s", path)
    return config


def _tls_settings(base: Path, tls: _TLSServerConfig) -> TLSSettings | None:
    if not tls.enabled:
        return None
    ciphers = [_TLS12_CIPHERS[name] for name in tls.cipher_suites if name in _TLS12_CIPHERS]
    return TLSSettings(
        cert_file=_resolve(base, tls.cert_file),
        key_file=_resolve(base, tls.key_file),
        client_ca_file=_resolve(base, tls.client_ca_file) if tls.client_ca_file else None,
        verify_mode=_CLIENT_AUTH[tls.client_auth_type],
        minimum_version=_TLS_VERSIONS[tls.min_version],
        maximum_version=_TLS_VERSIONS[tls.max_version],
        ciphers=":".join(ciphers) or None,
        prefer_server_ciphers=tls.prefer_server_cipher_suites,
    )


def _resolve(base: Path, name: str) -> Path:
    # Relative to the config file's directory, as exporter-toolkit's SetDirectory does.
    path = Path(name)
    return path if path.is_absolute() else base / path


def _server_context(config_path: Path, tls: TLSSettings) -> ssl.SSLContext:
    def fail(problem: str) -> WebConfigError:
        return WebConfigError(f"web config {config_path}: {problem}")

    cert_pem = _read(tls.cert_file, "cert_file", fail)
    key_pem = _read(tls.key_file, "key_file", fail)
    # cryptography first, for messages that say which file is wrong; ssl's say "PEM lib".
    try:
        certificate = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        raise fail(f"cert_file ({tls.cert_file}) holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise fail(f"key_file ({tls.key_file}) is encrypted; give an unencrypted key") from None
    except ValueError:
        raise fail(f"key_file ({tls.key_file}) holds no PEM private key") from None
    if _public_der(certificate.public_key()) != _public_der(key.public_key()):
        raise fail(
            f"failed to load X509KeyPair: private key in key_file ({tls.key_file}) "
            f"does not match the certificate in cert_file ({tls.cert_file})"
        )

    if tls.client_ca_file is not None:
        try:
            x509.load_pem_x509_certificates(_read(tls.client_ca_file, "client_ca_file", fail))
        except ValueError:
            raise fail(f"client_ca_file ({tls.client_ca_file}) holds no PEM certificate") from None

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = tls.minimum_version
    context.maximum_version = tls.maximum_version
    if not tls.prefer_server_ciphers:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        if tls.ciphers:
            context.set_ciphers(tls.ciphers)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file is not None:
            context.load_verify_locations(cafile=tls.client_ca_file)
    except ssl.SSLError as exc:
        raise fail(f"TLS setup failed: {exc.reason or exc}") from None
    context.verify_mode = tls.verify_mode
    return context


def _read(path: Path, field_name: str, fail: Callable[[str], WebConfigError]) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"failed to read {field_name} ({path}): {exc.strerror}") from None


def _public_der(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


class _BasicAuthGate:
    """Checks basic-auth credentials: constant-time names, bcrypt off the loop, cached successes."""

    def __init__(self, users: Mapping[str, bytes], check: PasswordCheck) -> None:
        self._users = [(name.encode("utf-8"), hashed) for name, hashed in users.items()]
        self._check = check
        # An unknown user's password is checked against the costliest configured hash and
        # the result thrown away: a wrong user name takes as long as a wrong password (no user
        # enumeration by timing), and nothing slow is computed at start.
        self._decoy = max((hashed for _, hashed in self._users), key=lambda h: int(h[4:6]))
        # Cache keys are keyed HMACs: the cache never holds anything a password could be
        # recovered from faster than from the bcrypt hash itself.
        self._cache_secret = secrets.token_bytes(32)
        self._verified: dict[bytes, None] = {}
        # One bcrypt at a time, as exporter-toolkit's bcryptMtx: a flood of wrong passwords
        # costs one core, and a scraper with cached credentials never waits for it.
        self._bcrypt_lock = asyncio.Lock()

    async def admits(self, request: web.Request) -> bool:
        """Whether the request carries the right password of a configured user."""
        credentials = _basic_credentials(request.headers.get(hdrs.AUTHORIZATION, ""))
        if credentials is None:
            return False
        user, password = credentials
        hashed, known = self._decoy, False
        for name, candidate in self._users:  # compare every name: no early exit to time
            if hmac.compare_digest(name, user):
                hashed, known = candidate, True
        key = hmac.digest(
            self._cache_secret, len(user).to_bytes(4, "big") + user + hashed + password, "sha256"
        )
        if key in self._verified:
            return True
        async with self._bcrypt_lock:
            if key in self._verified:  # verified while this request waited
                return True
            matches = await asyncio.to_thread(self._check_password, password, hashed)
        if not (matches and known):
            return False
        if len(self._verified) >= MAX_CACHED_VERIFICATIONS:
            del self._verified[next(iter(self._verified))]
        self._verified[key] = None
        return True

    def _check_password(self, password: bytes, hashed: bytes) -> bool:
        try:
            return self._check(password, hashed)
        except ValueError:  # bcrypt refuses passwords over 72 bytes: a wrong password
            return False


def _basic_credentials(header: str) -> tuple[bytes, bytes] | None:
    """User and password of an `Authorization: Basic` header, as bytes; None if absent or bad."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, as exporter-toolkit's strict YAML does."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[str] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                )
            seen.add(key_node.value)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return f"invalid YAML at line {exc.problem_mark.line + 1}: {exc.problem}"
    return "invalid YAML: " + " ".join(str(exc).split())


def _describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown field {where}")
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
