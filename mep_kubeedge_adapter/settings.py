"""The adapter's settings: one validated model, loaded once and passed in.

Sources, highest priority first: CLI flags, environment variables
``MKA_<GROUP>__<NAME>`` (e.g. ``MKA_MQTT__URL``), the YAML file given with
``--config``, then the defaults below (SPEC §3); each is pydantic-settings' own source
(``CliSettingsSource`` under the adapter's flag names, ``EnvSettingsSource``,
``YamlConfigSettingsSource``). No other module reads the environment.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    CliSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

ENV_PREFIX = "MKA_"


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Group):
    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    topic_layout: Literal["auto", "namespaced", "legacy"] = "auto"
    default_namespace: str = "default"
    client_id: str | None = None
    request_timeout: float = Field(5.0, gt=0, description="seconds to wait for EdgeCore's answer")
    probe_interval: float = Field(
        30.0,
        gt=0,
        description="seconds between membership/get probes that detect a silent EdgeCore",
    )
    silent_probes: int = Field(
        3,
        ge=1,
        description="unanswered membership/get probes in a row after which the EventBus "
        "session is re-established (a session can stay connected yet receive nothing)",
    )
    resync_interval: float = Field(
        300.0,
        ge=0,
        description="seconds between full twin re-reads (0 = only after outages); "
        "catches an EdgeCore restarted between two probes",
    )
    max_payload: int = Field(256 * 1024, gt=0, description="bytes; larger payloads are dropped")
    max_queued: int = Field(
        10_000,
        ge=1,
        description="received messages waiting to be applied, all topics together; "
        "beyond it the oldest of the next topic is dropped (counted)",
    )
    max_queued_per_topic: int = Field(
        1000,
        ge=1,
        description="received messages waiting on one topic (one device's documents...); "
        "beyond it that topic's oldest is dropped (counted)",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError("must look like mqtt://host:port or mqtts://host:port")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        return value

    @model_validator(mode="after")
    def _check_tls_pair(self) -> MqttSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        if self.max_queued_per_topic > self.max_queued:
            raise ValueError("max_queued_per_topic must be at most max_queued")
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if self.tls else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme in ("mqtts", "ssl") or self.ca_file is not None


class KubeSettings(_Group):
    source: Literal["none", "incluster", "kubeconfig", "metaserver"] = "none"
    kubeconfig: Path | None = None
    url: str | None = None
    namespace: str | None = None
    all_nodes: bool = Field(False, description="keep devices bound to any node, not just ours")
    watch_timeout: int = Field(300, gt=0, description="server-side watch timeout, seconds")

    @property
    def effective_url(self) -> str | None:
        if self.url:
            return self.url
        if self.source == "metaserver":
            return "http://127.0.0.1:10550"
        return None


class MepSettings(_Group):
    url: str | None = None
    app_instance_id: str | None = None
    ak: SecretStr | None = None
    sk: SecretStr | None = None
    ca_file: Path | None = None
    tls_server_name: str | None = None
    service_mode: Literal["node", "per-model", "per-device"] = "node"
    heartbeat_interval: float = Field(30.0, gt=0, le=60)
    register_concurrency: int = Field(4, ge=1, le=32)
    max_services: int = Field(50, ge=1, description="EdgeGallery's per-app instance limit")
    deregister_timeout: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _check_identity(self) -> MepSettings:
        if self.url and not (self.app_instance_id and self.ak and self.sk):
            raise ValueError("with mep.url set, app_instance_id, ak and sk are required")
        return self


class ApiSettings(_Group):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = None
    auth: Literal["none", "jwt"] = "none"
    jwt_public_key_file: Path | None = None
    jwt_issuer: str = "mepauth"
    write_path: Literal["eventbus", "kube"] = "eventbus"
    max_body: int = Field(64 * 1024, gt=0, description="bytes; larger requests get 413")
    header_timeout: float = Field(
        10.0, gt=0, description="seconds a new connection may take to send its request head"
    )
    keepalive_timeout: float = Field(
        75.0,
        gt=0,
        description="seconds an idle keep-alive connection is kept (above the gateway's 60)",
    )
    callback_networks: list[str] = Field(
        default_factory=lambda: ["0.0.0.0/0", "::/0"],
        description="networks a callbackReference may point into",
    )
    callback_deny_networks: list[str] = Field(
        default_factory=lambda: ["169.254.0.0/16", "fe80::/10"],
        description="networks a callbackReference may never point into (link-local)",
    )

    @field_validator("callback_networks", "callback_deny_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @model_validator(mode="after")
    def _check_jwt(self) -> ApiSettings:
        if self.auth == "jwt" and self.jwt_public_key_file is None:
            raise ValueError("auth=jwt needs jwt_public_key_file")
        return self


class NotifySettings(_Group):
    """Bounds and timing of notification delivery (HTTP callbacks and websockets)."""

    coalesce_after: int = Field(
        1000, ge=1, description="pending notifications per subscriber before coalescing starts"
    )
    max_pending: int = Field(
        2000, ge=1, description="hard bound per subscriber; beyond it the oldest is dropped"
    )
    max_attempts: int = Field(10, ge=1, description="delivery attempts before a drop")
    max_age: float = Field(600.0, gt=0, description="seconds a notification may wait")
    request_timeout: float = Field(10.0, gt=0, description="seconds per callback POST")
    retry_base: float = Field(
        0.5, gt=0, description="seconds before the first callback retry; doubles per attempt"
    )
    retry_cap: float = Field(
        30.0, gt=0, description="longest wait between callback retries (and for Retry-After)"
    )
    max_subscriptions: int = Field(
        1000, ge=1, description="subscriptions the adapter holds in all; beyond: 403"
    )
    max_subscriptions_per_caller: int = Field(
        100,
        ge=1,
        description="subscriptions one caller holds (the token subject; without auth the "
        "client address); beyond: 403",
    )
    max_pending_total: int = Field(
        100_000,
        ge=1,
        description="pending notifications of all subscribers together; beyond it the "
        "backlogs above their fair share drop their oldest",
    )
    max_sockets_per_subscription: int = Field(
        4, ge=1, description="websockets attached to one subscription at a time"
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> NotifySettings:
        if self.max_pending < self.coalesce_after:
            raise ValueError("max_pending must be at least coalesce_after")
        if self.max_subscriptions_per_caller > self.max_subscriptions:
            raise ValueError("max_subscriptions_per_caller must be at most max_subscriptions")
        if self.retry_cap < self.retry_base:
            raise ValueError("retry_cap must be at least retry_base")
        return self


class MecmSettings(_Group):
    """The KubeEdge plugin for MECM (``mecm-plugin``) and its client (``mecm-call``), SPEC §7.

    The TLS pair and the JWT key are required only when the plugin starts
    (:meth:`check_plugin`), so settings without them stay valid for every other verb.
    """

    host: str = "0.0.0.0"
    port: int = Field(8096, ge=0, le=65535, description="gRPC listener of mecm-plugin")
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain (RSA key)")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")
    insecure: bool = Field(
        False, description="serve plaintext gRPC (lcmcontroller's client_ssl_enable=false)"
    )
    auth: Literal["jwt", "none"] = "jwt"
    jwt_public_key_file: Path | None = Field(
        None, description="PEM public key (or certificate) of user-mgmt, which signs accessToken"
    )
    data_dir: Path = Field(
        Path("./mka-mecm"), description="kubeconfigs, packages and instance records"
    )
    max_package_bytes: int = Field(
        536_870_912, gt=0, description="bytes; the largest CSAR accepted, as uploaded"
    )
    max_unpacked_bytes: int = Field(
        2_147_483_648, gt=0, description="bytes; the largest CSAR accepted, unpacked"
    )
    max_package_files: int = Field(10_000, gt=0, description="entries a CSAR may hold")
    max_file_bytes: int = Field(
        536_870_912, gt=0, description="bytes; the largest single file of a CSAR, unpacked"
    )
    max_stored_package_bytes: int = Field(
        8_589_934_592,
        gt=0,
        description="bytes; all stored packages together, unpacked; beyond: RESOURCE_EXHAUSTED",
    )
    max_packages: int = Field(
        1000, ge=1, description="packages stored for all tenants; beyond: RESOURCE_EXHAUSTED"
    )
    max_packages_per_tenant: int = Field(
        200, ge=1, description="packages stored for one tenant; beyond: RESOURCE_EXHAUSTED"
    )
    max_uploads_in_progress: int = Field(
        2,
        ge=1,
        description="package uploads received and unpacked at once; beyond: RESOURCE_EXHAUSTED",
    )
    max_configs: int = Field(
        1000, ge=1, description="kubeconfigs stored for all tenants; beyond: RESOURCE_EXHAUSTED"
    )
    max_configs_per_tenant: int = Field(
        500, ge=1, description="kubeconfigs stored for one tenant; beyond: RESOURCE_EXHAUSTED"
    )
    max_instances: int = Field(
        2000, ge=1, description="live app instances of all tenants; beyond: RESOURCE_EXHAUSTED"
    )
    max_instances_per_tenant: int = Field(
        500, ge=1, description="live app instances of one tenant; beyond: RESOURCE_EXHAUSTED"
    )
    terminated_retention: int = Field(
        604_800,
        ge=1,
        description="seconds a terminated app instance is remembered, so that terminating it "
        "again answers Success; afterwards it is unknown (NOT_FOUND)",
    )
    max_terminated: int = Field(
        10_000,
        ge=1,
        description="terminated app instances remembered at most; the oldest are forgotten "
        "first, before their retention ends",
    )
    token: SecretStr | None = Field(None, description="accessToken that mecm-call sends")

    @model_validator(mode="after")
    def _check_bounds(self) -> MecmSettings:
        for name in ("configs", "packages", "instances"):
            if getattr(self, f"max_{name}_per_tenant") > getattr(self, f"max_{name}"):
                raise ValueError(f"max_{name}_per_tenant must be at most max_{name}")
        return self

    def check_plugin(self) -> None:
        """Raise ValueError when ``mecm-plugin`` cannot start with these settings."""
        if not self.insecure and (self.tls_cert_file is None or self.tls_key_file is None):
            raise ValueError(
                "mecm.tls_cert_file and mecm.tls_key_file are required "
                "(MKA_MECM__TLS_CERT_FILE, MKA_MECM__TLS_KEY_FILE), unless mecm.insecure=true"
            )
        if self.auth == "jwt" and self.jwt_public_key_file is None:
            raise ValueError(
                "mecm.auth=jwt needs mecm.jwt_public_key_file (MKA_MECM__JWT_PUBLIC_KEY_FILE)"
            )


class StoreSettings(_Group):
    path: Path = Path("./mka-state.sqlite3")


class LogSettings(_Group):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class Settings(BaseSettings):
    """Everything the adapter can be told (SPEC §3)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    node_name: str = Field(default_factory=socket.gethostname)
    mqtt: MqttSettings = MqttSettings()
    kube: KubeSettings = KubeSettings()
    mep: MepSettings = MepSettings()
    api: ApiSettings = ApiSettings()
    notify: NotifySettings = NotifySettings()
    mecm: MecmSettings = MecmSettings()
    store: StoreSettings = StoreSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags and the YAML file are added by load_settings(), which knows them.
        return (init_settings, env_settings)


class SettingsError(Exception):
    """Settings could not be loaded; the message is meant for a person."""


_GROUPS = frozenset(
    name
    for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
)


_CLI_SOURCE = "settings_flags"
"""Where ``add_settings_arguments`` leaves its flag source in the parsed arguments."""


def _env_name(dotted: str) -> str:
    return ENV_PREFIX + dotted.upper().replace(".", "__")


def _add_flag(parser: argparse.ArgumentParser, *_names: str, **kwargs: Any) -> Any:
    """pydantic-settings' flags under the adapter's names: ``--mqtt-url`` for ``mqtt.url``
    (``--<group>-<name>``, dashes for underscores), each help naming its variable. The
    whole-group JSON flags (``--mqtt '{...}'``) are left out: one flag per setting."""
    dest: str = kwargs["dest"]
    if dest in _GROUPS:
        return None
    kwargs["help"] = f"{kwargs.get('help') or ''} (env {_env_name(dest)})".strip()
    kwargs["metavar"] = "VALUE"
    return parser.add_argument("--" + dest.replace(".", "-").replace("_", "-"), **kwargs)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and one flag per setting (``--mqtt-url``, ``--api-port``...), parsed
    by pydantic-settings' own CLI source (lists as JSON or comma separated, ``null`` for
    none)."""
    parser.add_argument("--config", type=Path, help="YAML settings file")
    flags: CliSettingsSource[argparse.ArgumentParser] = CliSettingsSource(
        Settings,
        root_parser=parser,
        cli_prefix="",
        add_argument_method=_add_flag,
        add_argument_group_method=lambda p, *a, **k: p,
    )
    parser.set_defaults(**{_CLI_SOURCE: flags})


class _EnvironSource(EnvSettingsSource):
    """Environment variables from an explicit mapping (tests and embedding)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = {key.lower(): value for key, value in environ.items()}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._environ


def _yaml_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise SettingsError(f"cannot read settings file {path}: no such file")
    try:
        return YamlConfigSettingsSource(settings_cls, yaml_file=path, yaml_file_encoding="utf-8")
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"settings file {path} must hold a mapping at the top level") from exc


def load_settings(
    args: argparse.Namespace | None = None,
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from ``overrides``, flags (``args`` parsed by a parser that had
    ``add_settings_arguments``), the environment (``environ`` instead of the process's)
    and the YAML file, in that order of priority; raise SettingsError if invalid."""
    path = config_file or (getattr(args, "config", None) if args is not None else None)
    flags: CliSettingsSource[Any] | None = getattr(args, _CLI_SOURCE, None)

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources = [init_settings]
            if flags is not None and args is not None:
                sources.append(flags(parsed_args=args))
            sources.append(env_settings if environ is None else _EnvironSource(cls, environ))
            if path is not None:
                sources.append(_yaml_source(settings_cls, Path(path)))
            return tuple(sources)

    try:
        return _Loaded(**(overrides or {}))
    except SourceError as exc:
        raise SettingsError(f"invalid settings: {exc}") from exc
    except ValueError as exc:
        raise SettingsError(_describe_validation_error(exc)) from exc


def _describe_validation_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"invalid settings: {exc}"
    lines = ["invalid settings:"]
    for error in errors():
        loc = ".".join(str(p) for p in error.get("loc", ()))
        env = ENV_PREFIX + "__".join(str(p).upper() for p in error.get("loc", ()))
        where = f"{loc} ({env})" if loc else "settings"
        lines.append(f"  {where}: {error.get('msg')}")
    return "\n".join(lines)


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, with every secret (``SecretStr``) as ``***``."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, SecretStr):
            return "***"
        if isinstance(value, Path):
            return str(value)
        return value

    result = walk(settings.model_dump(mode="python"))
    assert isinstance(result, dict)
    return result


def public_url(settings: Settings, bound_port: int | None = None) -> str:
    """``MKA_API__PUBLIC_URL`` or ``http://<node ip>:<port>`` (SPEC §3)."""
    if settings.api.public_url:
        return settings.api.public_url.rstrip("/")
    port = bound_port or settings.api.port
    host = settings.api.host
    if host in ("0.0.0.0", "::", ""):
        host = _primary_address()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _primary_address() -> str:
    """This host's address as other hosts would reach it, without sending anything."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return "127.0.0.1"
    for info in infos:
        address = str(info[4][0])
        if not address.startswith("127."):
            return address
    return "127.0.0.1"
