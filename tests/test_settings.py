from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mep_kubeedge_adapter.notify.subscriptions import (
    SubscriptionLimits,
    delivery_settings,
    subscription_limits,
)
from mep_kubeedge_adapter.settings import (
    NotifySettings,
    SettingsError,
    add_settings_arguments,
    load_settings,
    redacted,
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_follow_the_spec() -> None:
    s = load_settings(environ={})
    assert s.mqtt.url == "mqtt://127.0.0.1:1883"
    assert s.mqtt.topic_layout == "auto"
    assert s.kube.source == "none"
    assert s.mep.service_mode == "node" and s.mep.heartbeat_interval == 30
    assert (s.api.host, s.api.port, s.api.auth, s.api.write_path) == (
        "0.0.0.0",
        8080,
        "none",
        "eventbus",
    )
    assert s.store.path == Path("./mka-state.sqlite3")


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(
        "mqtt:\n  url: mqtt://10.0.0.1:1883\n  topic_layout: legacy\napi:\n  port: 9000\nnode_name: from-file\n"
    )
    env = {"MKA_MQTT__URL": "mqtt://127.0.0.2:1883", "MKA_API__PORT": "9001"}
    s = load_settings(parse("--config", str(config), "--api-port", "9002"), environ=env)
    assert s.mqtt.url == "mqtt://127.0.0.2:1883"
    assert s.mqtt.topic_layout == "legacy"
    assert s.api.port == 9002
    assert s.node_name == "from-file"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MKA_API__PORT": "abc"}, "api.port"),
        ({"MKA_MQTT__URL": "http://x"}, "mqtt.url"),
        ({"MKA_MQTT__TOPIC_LAYOUT": "flat"}, "mqtt.topic_layout"),
        ({"MKA_MEP__URL": "https://mep:8443"}, "app_instance_id, ak and sk are required"),
        ({"MKA_API__AUTH": "jwt"}, "jwt_public_key_file"),
        ({"MKA_API__CALLBACK_NETWORKS": '["not-a-net"]'}, "callback_networks"),
        ({"MKA_NOTIFY__RETRY_BASE": "5", "MKA_NOTIFY__RETRY_CAP": "1"}, "retry_cap must be"),
    ],
)
def test_invalid_settings_are_explained(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace(".", r"\.")):
        load_settings(environ=env)


def test_secrets_are_redacted() -> None:
    env = {
        "MKA_MEP__URL": "https://mep:8443",
        "MKA_MEP__AK": "QVUJMSUMgS0VZLS0tLS0",
        "MKA_MEP__SK": "secret-secret",
        "MKA_MEP__APP_INSTANCE_ID": "5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f",
        "MKA_MQTT__PASSWORD": "pw",
        "MKA_MECM__TOKEN": "mecm-token-value",
    }
    data = redacted(load_settings(environ=env))
    assert data["mecm"]["token"] == "***"
    assert "mecm-token-value" not in json.dumps(data)
    assert data["mep"]["ak"] == "***" and data["mep"]["sk"] == "***"
    assert data["mqtt"]["password"] == "***"
    assert "secret-secret" not in json.dumps(data)


def test_config_command_exit_codes() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "mep_kubeedge_adapter", "config", "--mqtt-topic-layout", "legacy"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["mqtt"]["topic_layout"] == "legacy"
    bad = subprocess.run(
        [sys.executable, "-m", "mep_kubeedge_adapter", "config", "--api-port", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "api.port (MKA_API__PORT)" in bad.stderr


def test_every_notify_setting_reaches_delivery_or_the_limits() -> None:
    s = load_settings(
        environ={
            "MKA_NOTIFY__COALESCE_AFTER": "7",
            "MKA_NOTIFY__MAX_PENDING": "8",
            "MKA_NOTIFY__MAX_ATTEMPTS": "3",
            "MKA_NOTIFY__MAX_AGE": "9.5",
            "MKA_NOTIFY__REQUEST_TIMEOUT": "4",
            "MKA_NOTIFY__RETRY_BASE": "0.25",
            "MKA_NOTIFY__RETRY_CAP": "2",
            "MKA_NOTIFY__MAX_SUBSCRIPTIONS": "20",
            "MKA_NOTIFY__MAX_SUBSCRIPTIONS_PER_CALLER": "5",
            "MKA_NOTIFY__MAX_PENDING_TOTAL": "99",
            "MKA_NOTIFY__MAX_SOCKETS_PER_SUBSCRIPTION": "2",
        }
    )
    delivery = delivery_settings(s.notify)
    assert (delivery.coalesce_after, delivery.max_pending, delivery.max_attempts) == (7, 8, 3)
    assert (delivery.max_age, delivery.request_timeout) == (9.5, 4)
    assert (delivery.backoff_base, delivery.backoff_cap) == (0.25, 2)
    assert (delivery.max_pending_total, delivery.max_sockets_per_subscription) == (99, 2)
    assert subscription_limits(s.notify) == SubscriptionLimits(total=20, per_caller=5)
    assert len(s.notify.model_fields_set) == len(NotifySettings.model_fields)  # all covered


def test_lists_and_switches_as_flags_and_a_missing_file(tmp_path: Path) -> None:
    s = load_settings(
        parse("--api-callback-networks", "10.0.0.0/8,192.168.0.0/16", "--kube-all-nodes", "true"),
        environ={},
    )
    assert s.api.callback_networks == ["10.0.0.0/8", "192.168.0.0/16"]
    assert s.kube.all_nodes is True
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings(config_file=tmp_path / "missing.yaml", environ={})
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(SettingsError, match="must hold a mapping at the top level"):
        load_settings(config_file=listed, environ={})


def test_the_plugin_verb_without_insecure_keeps_tls_on(tmp_path: Path) -> None:
    from mep_kubeedge_adapter.cli import build_parser

    parser = build_parser()
    plain = load_settings(parser.parse_args(["mecm-plugin"]), environ={})
    assert plain.mecm.insecure is False
    switched = load_settings(parser.parse_args(["mecm-plugin", "--insecure"]), environ={})
    assert switched.mecm.insecure is True
    from_env = load_settings(
        parser.parse_args(["mecm-plugin"]), environ={"MKA_MECM__INSECURE": "true"}
    )
    assert from_env.mecm.insecure is True
    flag = load_settings(parser.parse_args(["mecm-plugin", "--mecm-insecure", "true"]), environ={})
    assert flag.mecm.insecure is True
