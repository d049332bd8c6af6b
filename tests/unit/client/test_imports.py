"""The client's sans-I/O modules import without aiohttp (nor PyJWT): the package imports lazily."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import openpanel_ws.client

# Every module of the client that is plain synchronous code.
SANS_IO_CLIENT = [
    "openpanel_ws.client",
    "openpanel_ws.client.actions",
    "openpanel_ws.client.cli_text",
    "openpanel_ws.client.messages",
    "openpanel_ws.client.outbox",
    "openpanel_ws.client.policy",
    "openpanel_ws.client.sansio",
    "openpanel_ws.client.subscriptions",
    "openpanel_ws.client.terminal",
]

# A fresh interpreter where `import aiohttp` fails (and aiohttp is not loaded).
WITHOUT_AIOHTTP = textwrap.dedent("""
    import importlib, importlib.abc, sys

    class BlockAiohttp(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "aiohttp" or name.startswith("aiohttp."):
                raise ImportError("aiohttp is blocked")
            return None

    sys.meta_path.insert(0, BlockAiohttp())
    for name in sys.argv[1:]:
        importlib.import_module(name)
    import openpanel_ws.client as client
    assert client.LogCursor is not None and client.ClientConnection is not None
    assert client.Backoff is not None and client.BackoffPolicy is not None
    try:
        client.OpenPanelClient
    except ImportError:
        pass
    else:
        raise AssertionError("the asyncio client imported without aiohttp")
    assert "aiohttp" not in sys.modules
    # Nor the server's settings and token verification (PyJWT).
    assert "jwt" not in sys.modules and "openpanel_ws.config" not in sys.modules
    print("ok")
""")


def test_sans_io_client_modules_import_without_aiohttp() -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT_AIOHTTP, *SANS_IO_CLIENT],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_every_public_name_resolves() -> None:
    for name in openpanel_ws.client.__all__:
        assert getattr(openpanel_ws.client, name) is not None, name
    assert set(openpanel_ws.client.__all__) <= set(dir(openpanel_ws.client))


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        openpanel_ws.client.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchName" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
