"""The outbound path (docs/protocol.md "Outbound path"): the frame encoder (`frames`), the
sans-I/O state machine of one connection's outbound side (`sansio.OutboundProtocol`) and
its asyncio shell (`shell.ClientWriter`, `shell.WriteScheduler`)."""

from openpanel_ws.outbound.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_frame,
    control_frame,
    frame,
    mask,
    masked_frame,
    text_frame,
    text_frame_once,
)
from openpanel_ws.outbound.sansio import OutboundProtocol, OutboundState, Step
from openpanel_ws.outbound.shell import (
    CLOSE_TIMEOUT,
    ClientWriter,
    FlowLike,
    StreamLike,
    TransportLike,
    WebSocketLike,
    WriteScheduler,
)

__all__ = [
    "CLOSE_TIMEOUT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "ClientWriter",
    "FlowLike",
    "OutboundProtocol",
    "OutboundState",
    "Step",
    "StreamLike",
    "TransportLike",
    "WebSocketLike",
    "WriteScheduler",
    "close_frame",
    "control_frame",
    "frame",
    "mask",
    "masked_frame",
    "text_frame",
    "text_frame_once",
]
