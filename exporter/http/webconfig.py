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

import logging
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import bcrypt
import yaml
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.http.basic_auth import CHALLENGE, BasicAuthGate, PasswordCheck
from exporter.http.tls import (
    CLIENT_AUTH,
    CLIENT_AUTH_REFUSED,
    CURVES,
    TLS12_CIPHERS,
    TLS13_CIPHERS,
    TLS_VERSIONS,
    TLS_VERSIONS_REFUSED,
    TLSSettings,
    WebConfigError,
    resolve_path,
    server_context,
)

__all__ = ["PasswordCheck", "WebConfig", "WebConfigError", "load_web_config"]

log = logging.getLogger(__name__)

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
        if value in CLIENT_AUTH_REFUSED:
            raise ValueError(
                f"{value} is not supported: Python's ssl cannot require a client certificate "
                "without verifying it; use RequireAndVerifyClientCert with client_ca_file"
            )
        if value not in CLIENT_AUTH:
            raise ValueError(
                f"invalid ClientAuth: {value} (one of {', '.join(list(CLIENT_AUTH)[1:])})"
            )
        return value

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value in TLS_VERSIONS_REFUSED:
            raise ValueError(
                f"{value} is not supported (deprecated in Python's ssl); use TLS12 or TLS13"
            )
        if value not in TLS_VERSIONS:
            raise ValueError(f"unknown TLS version: {value}")
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _ciphers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in TLS12_CIPHERS and name not in TLS13_CIPHERS:
                raise ValueError(f"unknown cipher: {name}")
        return value

    @field_validator("curve_preferences")
    @classmethod
    def _curves(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in CURVES:
                raise ValueError(f"unknown curve: {name}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> _TLSServerConfig:
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            raise ValueError(
                f"min_version {self.min_version} is above max_version {self.max_version}"
            )
        if not self.enabled:
            return self
        if not self.cert_file:
            raise ValueError("missing cert_file")
        if not self.key_file:
            raise ValueError("missing key_file")
        verifies = CLIENT_AUTH[self.client_auth_type] != ssl.CERT_NONE
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
        return server_context(self.path, self.tls)

    def middleware(self, check_password: PasswordCheck = bcrypt.checkpw) -> Middleware:
        """Basic auth (when users are configured) and the extra headers, for every response.

        `check_password(password, hash)` is the bcrypt verification; tests wrap it to count calls.
        Each call makes a fresh verification cache, so build one per listener.
        """
        gate = BasicAuthGate(self.users, check_password) if self.users else None
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
        reason = "Python's ssl cannot set a curve preference list"
        ignored = {"path": str(path), "field": "curve_preferences", "reason": reason}
        log.warning("web config setting ignored", extra=ignored)
    if config.auth_enabled and config.tls is None:
        log.warning(
            "basic auth without TLS sends passwords in clear text", extra={"path": str(path)}
        )
    return config


def _tls_settings(base: Path, tls: _TLSServerConfig) -> TLSSettings | None:
    if not tls.enabled:
        return None
    ciphers = [TLS12_CIPHERS[name] for name in tls.cipher_suites if name in TLS12_CIPHERS]
    return TLSSettings(
        cert_file=resolve_path(base, tls.cert_file),
        key_file=resolve_path(base, tls.key_file),
        client_ca_file=resolve_path(base, tls.client_ca_file) if tls.client_ca_file else None,
        verify_mode=CLIENT_AUTH[tls.client_auth_type],
        minimum_version=TLS_VERSIONS[tls.min_version],
        maximum_version=TLS_VERSIONS[tls.max_version],
        ciphers=":".join(ciphers) or None,
        prefer_server_ciphers=tls.prefer_server_cipher_suites,
    )


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
