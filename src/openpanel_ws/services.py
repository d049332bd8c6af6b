"""The shared parts every gateway may use: settings, token verifier, the Docker hosts
(each with its engine and events hub: `hosts.registry`)."""

from __future__ import annotations

from dataclasses import dataclass

from openpanel_ws.auth import TokenVerifier
from openpanel_ws.config import Settings
from openpanel_ws.hosts.registry import HostRegistry

__all__ = [
    "Services",
]


@dataclass
class Services:
    settings: Settings
    verifier: TokenVerifier
    hosts: HostRegistry

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(
            settings=settings,
            verifier=TokenVerifier(settings.jwt()),
            hosts=HostRegistry(settings.host_configs(), settings.default_host,
                               default_timeout=settings.engine_timeout),
        )

    async def close(self) -> None:
        await self.hosts.close()
