"""A terminal of the client: opened once, reattached after a lost connection (no I/O).

`TerminalSubscription` is the `ClientSubscription` of `open_terminal`: it reattaches
with the `seq` of the last output received, so nothing is lost or repeated, and its
keystrokes and size are values: `write/resize` return what to send now and hold
(bounded) what must wait for the resume. docs/protocol.md "Terminal sessions" has the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from openpanel_ws.client.actions import Action, Deliver, Status, TerminalOpened, TerminalRefused
from openpanel_ws.client.messages import (
    ClientError,
    ContainerNotFound,
    PermissionDenied,
    ServerError,
    TerminalError,
    TerminalOutput,
)
from openpanel_ws.client.outbox import Input, Outgoing, split_input
from openpanel_ws.client.sansio import ClientSubscription
from openpanel_ws.protocol import TERMINAL_MAX_SIZE, TERMINAL_MIN_SIZE, CloseCode, Message

__all__ = ["HELD_INPUT_LIMIT", "RESUME_TIMEOUT", "TerminalSubscription"]

# The gateway's answer to a terminal message once its terminal has ended (the server's
# gateways/terminal/messages.NO_TERMINAL).
NO_TERMINAL_TEXT = "No terminal is open; send open_terminal first"

# How long a terminal tries to reattach after its connection was lost (the gateway's
# default grace period is 60 s; a session cannot outlive it).
RESUME_TIMEOUT: Final = 90.0
# Characters typed while a terminal is being reattached that are kept to send after it.
HELD_INPUT_LIMIT: Final = 65536


class TerminalSubscription(ClientSubscription):
    """One terminal: opened once, then reattached after a lost connection (docs/protocol.md
    "Terminal sessions") with the `seq` of the last output received, so nothing is lost
    or repeated; keystrokes typed meanwhile are held and sent after the resume."""

    def __init__(self, container: str, shell: str | None, cols: int | None, rows: int | None,
                 *, command: Sequence[str] | None = None, tty: bool = True,
                 stdin: bool = True, resume: bool = True, host: str | None = None) -> None:
        super().__init__()
        self.container = container
        # The host named by the caller, else the one `terminal_opened` names: a resume
        # asks the same host.
        self.host = host
        self.shell = shell
        self.cols = cols
        self.rows = rows
        self.command = list(command) if command else None
        self.container_lost = False
        self.tty = tty
        self.stdin = stdin
        # The open was answered either way (TerminalOpened or TerminalRefused emitted).
        self.settled = False
        self.eof_sent = False  # `eof` was sent: a late "no terminal" answer is its echo
        self.exit_code: int | None = None
        self.reason: str | None = None
        self._sent_open = False
        self.resume = resume
        self.session_id: str | None = None
        self.last_seq: int | None = None
        self.resuming = False
        self.resumes = 0
        # Typed while reattaching: sent right after the resume (bounded), and the last
        # size asked for, re-applied after a resume.
        self.held: list[Outgoing] = []
        self.held_chars = 0
        self.size: tuple[int, int] | None = None
        self.resume_timeout = RESUME_TIMEOUT
        self._give_up_at: float | None = None
        self._give_up_why = ""

    def write(self, data: str, *, link_open: bool) -> list[Outgoing]:
        """Keystrokes: what to send now; nothing while held (bounded, sent after the resume)."""
        items = split_input(data)
        if self._held(link_open):
            self.hold(items)
            return []
        return list(items)

    def resize(self, cols: int, rows: int, *, link_open: bool) -> list[Outgoing]:
        """The new size, clamped to the gateway's accepted range: what to send now;
        nothing while held (the last size is applied after the resume)."""
        def clamp(n: int) -> int:
            return max(TERMINAL_MIN_SIZE, min(TERMINAL_MAX_SIZE, n))

        self.size = (clamp(cols), clamp(rows))
        return [] if self._held(link_open) else [self.resize_message()]

    def _held(self, link_open: bool) -> bool:
        """Input and size wait while the terminal is reattached or the link is down."""
        return self.resuming or not link_open

    def hold(self, items: Sequence[Outgoing]) -> None:
        for item in items:
            size = len(item.data) if isinstance(item, Input) else 1
            if self.held_chars + size > HELD_INPUT_LIMIT:
                return  # beyond the bound typed input is dropped while disconnected
            self.held.append(item)
            self.held_chars += size

    def resize_message(self) -> Message:
        assert self.size is not None
        return {"type": "resize", "cols": self.size[0], "rows": self.size[1]}

    def resume_items(self) -> list[Outgoing]:
        """After the resume request: the size, then what was typed meanwhile."""
        items: list[Outgoing] = []
        if self.size is not None:
            items.append(self.resize_message())
        items.extend(self.held)
        self.held, self.held_chars = [], 0
        return items

    def on_open(self, server_ns: int) -> list[Outgoing]:
        items: list[Outgoing] = list(self.subscribe_messages())
        if self.resuming:
            items.extend(self.resume_items())
        return items

    def subscribe_messages(self) -> list[Message]:
        if self._sent_open:
            if self.resuming and self.session_id is not None and not self.ended:
                msg: Message = {"type": "open_terminal", **self._where(),
                                "sessionId": self.session_id}
                if self.last_seq is not None:
                    msg["lastSeq"] = self.last_seq
                return [msg]
            return []
        self._sent_open = True
        msg = {"type": "open_terminal", **self._where()}
        if self.shell:
            msg["shell"] = self.shell
        if self.cols and self.rows:
            msg["cols"], msg["rows"] = self.cols, self.rows
        # Terminal extensions (docs/protocol.md): sent only when not the default.
        if self.command:
            msg["command"] = self.command
        if not self.tty:
            msg["tty"] = False
        if not self.stdin:
            msg["stdin"] = False
        return [msg]

    def _where(self) -> Message:
        msg: Message = {"containerId": self.container}
        if self.host is not None:
            msg["host"] = self.host
        return msg

    def fail(self, exc: ClientError, out: list[Action]) -> None:
        if not self.settled:
            self.settled = True
            out.append(TerminalRefused(self, exc))
        self.end(out, exc)

    def handle(self, msg: Message, now: float, out: list[Action]) -> bool:
        kind = msg.get("type")
        if kind == "terminal_opened":
            if not self.settled:
                self.settled = True
                self.session_id = str(msg.get("sessionId", ""))
                host = msg.get("host")
                if self.host is None and isinstance(host, str):
                    self.host = host
                out.append(TerminalOpened(self, self.session_id))
            elif self.resuming and msg.get("resumed") is True:
                self.resuming = False
                self.resumes += 1
                self._give_up_at = None
                start = msg.get("seq")
                lost = (start - self.last_seq if isinstance(start, int)
                        and self.last_seq is not None and start > self.last_seq else 0)
                out.append(Status("terminal session resumed" +
                                  (f" ({lost} bytes of output were lost)" if lost else "")))
        elif kind == "terminal_output":
            seq = msg.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                self.last_seq = seq
            stream = msg.get("stream")
            out.append(Deliver(self, TerminalOutput(str(msg.get("data", "")),
                                                    stream if isinstance(stream, str) else None)))
        elif kind == "terminal_closed":
            code = msg.get("exitCode")
            self.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
            self.reason = str(msg.get("reason", ""))
            self.container_lost = msg.get("containerLost") is True
            if not self.settled:
                self.settled = True
                out.append(TerminalRefused(self, TerminalError(f"terminal closed: {self.reason}")))
            self.end(out)
        elif kind == "terminal_error":
            text = str(msg.get("message", "terminal error"))
            if self.eof_sent and self.settled and text == NO_TERMINAL_TEXT:
                # Our `eof` crossed the program's exit: its terminal_closed (with the exit
                # code) follows; the program had nothing left to read anyway.
                return True
            if self.resuming:
                self.fail(TerminalError(
                    f"the terminal session did not survive the reconnect ({text})"), out)
                return True
            if text.lower().startswith("container not found"):
                text = f"container '{self.container}' not found" + text[len("container not found"):]
            self.fail(TerminalError(text), out)
        else:
            return False
        return True

    def handle_error(self, err: ServerError, out: list[Action]) -> bool:
        # Before the terminal opened any error is its answer; afterwards only a refusal
        # ends it (a rejected resize must not kill the session: it is just reported).
        if not self.settled or self.resuming or isinstance(err, PermissionDenied | ContainerNotFound):
            self.fail(TerminalError(f"the terminal session did not survive the reconnect ({err})")
                      if self.resuming else err, out)
            return True
        return False

    def on_disconnect(self, why: str, code: int | None, now: float, out: list[Action]) -> None:
        if code == CloseCode.GOING_AWAY and self.resume and self.settled:
            # A gateway that shuts down (not a reload, 1012) ends its terminals.
            self.fail(TerminalError(
                f"the terminal session did not survive: the gateway shut down ({why})"), out)
            return
        if self.resume and self.settled and self.session_id and not self.ended:
            if not self.resuming:
                out.append(Status(f"connection to the gateway lost ({why}); reattaching the terminal"))
                self._give_up_at = now + self.resume_timeout
                self._give_up_why = why
            self.resuming = True
            return
        self.fail(TerminalError(f"connection to the gateway lost ({why})"), out)

    def next_deadline(self) -> float | None:
        return None if self.ended else self._give_up_at

    def tick(self, now: float, out: list[Action]) -> None:
        if self._give_up_at is not None and now >= self._give_up_at:
            self._give_up_at = None
            self.fail(TerminalError(
                "the terminal session did not survive the reconnect (gateway "
                f"unreachable for {self.resume_timeout:g}s: {self._give_up_why})"), out)

    def end(self, out: list[Action], error: ClientError | None = None) -> None:
        self._give_up_at = None
        super().end(out, error)
