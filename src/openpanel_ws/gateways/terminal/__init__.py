"""`/ws/terminal`: An interactive shell in a container through Docker exec.

One terminal per connection. The package splits by role, each plain where it can be:

- `messages`: the wire format (request parsers, message builders, client-facing texts);
- `output`: exec output bytes -> `terminal_output` text, characters kept whole;
- `lifecycle`: one live terminal's identity, counters, idle clock and close decision
  (`TerminalLifecycle`);
- `ring`: the output ring and `seq` (what a resume replays) and `registry`: the live
  terminals by session id and owner, with caps (docs/protocol.md "Terminal sessions");
- `live`: the I/O of one live terminal (`Terminal`) and a connection's hold on it
  (`TerminalState`, the gateway's typed `Session.state`);
- `journal` (crash clean-up), `recording` (asciicast), `audit` (the audit log),
  `handoff` (live terminals across a reload);
- `gateway`: `TerminalGateway`, its handlers and its lifecycle.

The package imports nothing itself, so its plain modules import without aiohttp;
`TerminalGateway` is loaded from `gateway` on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openpanel_ws.gateways.terminal.gateway import TerminalGateway

__all__ = ["TerminalGateway"]


def __getattr__(name: str) -> Any:
    if name == "TerminalGateway":
        from openpanel_ws.gateways.terminal.gateway import TerminalGateway

        return TerminalGateway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
