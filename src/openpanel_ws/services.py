"""The shared parts every gateway may use: settings, token verifier, engine, events hub."""

from __future__ import annotations

from dataclasses import dataclass, field

from openpanel_ws.auth import TokenVerifier
from openpanel_ws.config import Settings
from openpanel_ws.engine.client import DockerEngine
from openpanel_ws.engine.events import EventsHub

__all__ = [
    "Services",
]


@dataclass
class Services:
    settings: Settings
    verifier: TokenVerifier
    engine: DockerEngine
    events: EventsHub = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventsHub(self.engine)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(
            settings=settings,
            verifier=TokenVerifier(settings.jwt()),
            engine=DockerEngine(settings.docker_host, settings.engine_timeout),
        )

    async def close(self) -> None:
        await self.events.close()
        await self.engine.close()
