"""Allowed origins: validated at start, matched as browsers send them, refusals logged
once per origin per minute."""

import pytest

from openpanel_ws.config import ConfigError, load_settings, normalize_origin
from openpanel_ws.origins import RefusedOrigins, origin_allowed


@pytest.mark.parametrize(
    ("value", "normal"),
    [("http://127.0.0.1:3150", "http://127.0.0.1:3150"),
     ("HTTPS://Panel.Example", "https://panel.example"),
     ("https://panel.example:443", "https://panel.example"),
     ("http://panel.example:80", "http://panel.example"),
     ("http://[::1]:8080", "http://[::1]:8080")],
)
def test_normalize_origin(value: str, normal: str) -> None:
    assert normalize_origin(value) == normal


@pytest.mark.parametrize(
    "bad", ["127.0.0.1:3150", "panel.example", "https://panel.example/", "https://panel.example/app",
            "ftp://panel.example", "https://", "http://host:99999", "http://user@host"],
)
def test_a_bad_origin_setting_is_refused_at_start_naming_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"OPENPANEL_WS_ALLOWED_ORIGINS": f"http://ok.example,{bad}"})
    text = str(info.value)
    assert "OPENPANEL_WS_ALLOWED_ORIGINS" in text and "scheme://host[:port]" in text
    assert "\n" not in text


def test_star_and_good_values_load() -> None:
    s = load_settings(environ={"OPENPANEL_WS_ALLOWED_ORIGINS": "*, https://a.example:8443"})
    assert s.allowed_origins == ["*", "https://a.example:8443"]


def test_matching_uses_the_browser_form() -> None:
    allowed = ["https://Panel.example:443"]
    assert origin_allowed("https://panel.example", "gw:3001", allowed)
    assert not origin_allowed("https://panel.example:8443", "gw:3001", allowed)
    assert not origin_allowed("null", "gw:3001", allowed)
    assert origin_allowed("http://gw:3001", "gw:3001", [])  # same origin
    assert origin_allowed(None, "gw:3001", [])  # not a browser
    assert not origin_allowed("http://[::1", "gw:3001", ["https://a.example"])  # malformed: refused


def test_refusals_are_logged_once_per_origin_per_minute() -> None:
    r = RefusedOrigins(period=60.0)
    assert r.should_log("https://a", 0.0)
    assert not r.should_log("https://a", 59.0)
    assert r.should_log("https://b", 59.0)
    assert r.should_log("https://a", 60.0)


def test_refusal_memory_is_bounded() -> None:
    r = RefusedOrigins(period=60.0)
    for i in range(RefusedOrigins.MAX_REMEMBERED + 10):
        r.should_log(f"https://h{i}", 1.0)
    assert len(r._last) <= RefusedOrigins.MAX_REMEMBERED
    assert r.should_log("https://late", 100.0)  # old entries expire
