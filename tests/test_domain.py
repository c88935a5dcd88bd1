from __future__ import annotations

import pytest

from mep_kubeedge_adapter.domain import DeviceId, check_twin_key, check_twin_value


@pytest.mark.parametrize(
    ("value", "twin_type", "ok"),
    [
        ("22", "int", True),
        ("-5", "integer", True),
        ("abc", "int", False),
        ("1.5", "int", False),
        ("1_000", "int", False),
        ("9223372036854775808", "int", False),
        ("21.5", "float", True),
        ("1e5", "float", True),
        ("1e+05", "float", False),
        ("1e500", "float", False),
        ("-1e309", "float", False),
        ("1e-500", "float", True),
        ("inf", "float", True),
        ("-Infinity", "float", True),
        ("true", "boolean", True),
        ("True", "boolean", False),
        ("hello world", "string", False),
        ("a=b", "string", False),
        ('{"x":1}', "string", False),
        ("a-b_c.d,e:f/g@h#i", "string", True),
        ("x" * 512, "string", True),
        ("x" * 513, "string", False),
        ("", "int", True),
        ("1", "double", False),
        ("1", "Updated", False),
        ("1", None, True),
    ],
)
def test_value_rules_follow_edgecore(value: str, twin_type: str | None, ok: bool) -> None:
    assert (check_twin_value(value, twin_type) is None) is ok


def test_key_rules() -> None:
    assert check_twin_key("temperature") is None
    assert check_twin_key("a b") is not None
    assert check_twin_key("x" * 129) is not None


def test_device_id_parsing() -> None:
    assert DeviceId.parse("ns/name") == DeviceId("ns", "name")
    assert DeviceId.parse("name", "dflt") == DeviceId("dflt", "name")
    assert str(DeviceId("a", "b")) == "a/b"
    with pytest.raises(ValueError, match="not a device id"):
        DeviceId.parse("a/b/c")
