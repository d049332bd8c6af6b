"""`/ws/containers`: container logs and live stats, one shared engine stream each.

Logs (`logs.py`): one engine `logs?follow=1` stream per container, fanned out to every
subscriber; each subscriber's own `tail`/`since` history is fetched separately and
joined to the live lines with no gap and no duplicate, across container restarts and
engine restarts. Stats (`stats.py`): one engine `stats?stream=1` stream per container,
computed and encoded once per sample, paced per subscriber. When the container is
removed every subscriber gets `subscription_ended` and the subscription is gone.

Every upstream closes when its last subscriber leaves or disconnects. The wire format
and the guarantees are in docs/containers.md.

The package imports nothing itself, so its plain parts (`requests`) import without
aiohttp; `ContainersGateway` is loaded from `gateway` on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openpanel_ws.gateways.containers.gateway import ContainersGateway

__all__ = ["ContainersGateway"]


def __getattr__(name: str) -> Any:
    if name == "ContainersGateway":
        from openpanel_ws.gateways.containers.gateway import ContainersGateway

        return ContainersGateway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
