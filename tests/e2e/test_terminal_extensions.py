"""Terminal extensions end to end (docs/protocol.md "Terminal extensions"): `tty`,
`command`, `stdin` on `open_terminal`, the `eof` input message and per-stream output."""

from __future__ import annotations

from typing import Any

from helpers import Containers, RunningServer, TerminalClient, WsClient, docker, eventually

TIMEOUT = 30.0


class Exec(TerminalClient):
    """A paced /ws/terminal client that keeps output per stream (`None` with a TTY)."""

    def __init__(self, client: WsClient) -> None:
        super().__init__(client, TIMEOUT)
        self.out: dict[str | None, str] = {}

    def take_output(self, msg: dict[str, Any]) -> None:
        stream = msg.get("stream")
        self.out[stream] = self.out.get(stream, "") + msg["data"]


async def exec_client(server: RunningServer) -> Exec:
    client = await server.connect("/ws/terminal")
    await client.auth()
    return Exec(client)


async def test_command_without_tty_separates_streams_and_keeps_exit_code(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    ex = await exec_client(server)
    reply = await ex.open(name, tty=False, stdin=False,
                          command=["sh", "-c", "echo out; echo err >&2; echo 'é€'; exit 3"])
    assert reply["type"] == "terminal_opened", reply
    closed = await ex.next_other()
    assert closed == {"type": "terminal_closed", "reason": "Process exited", "exitCode": 3}
    # Plain bytes: no TTY, so no \r\n and no prompt; every message names its stream.
    assert ex.out == {"stdout": "out\né€\n", "stderr": "err\n"}


async def test_eof_ends_the_programs_input(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    ex = await exec_client(server)
    assert (await ex.open(name, tty=False, command=["sh", "-c", "cat; echo done"]))["type"] \
        == "terminal_opened"
    await ex.send({"type": "input", "data": "abc\n"})
    await ex.send({"type": "eof"})
    closed = await ex.next_other()
    assert closed == {"type": "terminal_closed", "reason": "Process exited", "exitCode": 0}
    assert ex.out == {"stdout": "abc\ndone\n"}


async def test_shell_without_stdin_ends_at_once(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    ex = await exec_client(server)
    assert (await ex.open(name, tty=False, stdin=False))["type"] == "terminal_opened"
    closed = await ex.next_other()
    assert closed == {"type": "terminal_closed", "reason": "Process exited", "exitCode": 0}


async def test_input_refused_when_stdin_is_closed(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    ex = await exec_client(server)
    assert (await ex.open(name, tty=False, stdin=False, command=["sleep", "600"]))["type"] \
        == "terminal_opened"
    await ex.send({"type": "input", "data": "x"})
    reply = await ex.next_other()
    assert reply["type"] == "terminal_error" and "closed" in reply["message"], reply
    await ex.send({"type": "resize", "cols": 80, "rows": 24})
    reply = await ex.next_other()
    assert reply["type"] == "terminal_error" and "tty" in reply["message"], reply
    await ex.send({"type": "close_terminal"})
    assert (await ex.next_other())["reason"] == "User closed"
    # The non-TTY program is killed like a shell.
    async def gone() -> bool:
        return "sleep 600" not in await docker("exec", name, "ps", "-o", "stat,args")

    await eventually(gone, TIMEOUT, step=0.2, what="sleep 600 not left behind")


async def test_command_with_tty(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    ex = await exec_client(server)
    assert (await ex.open(name, command=["echo", "a  b"]))["type"] == "terminal_opened"
    closed = await ex.next_other()
    assert closed["exitCode"] == 0
    assert ex.out == {None: "a  b\r\n"}  # the specification's message: no `stream`


async def test_bad_extension_fields_are_refused(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    ex = await exec_client(server)
    cases = [({"tty": "no"}, "tty"), ({"stdin": 0}, "stdin"), ({"command": []}, "command"),
             ({"command": "ls /"}, "command"), ({"command": ["ls", 1]}, "command"),
             ({"command": [""]}, "command"), ({"command": ["ls"], "shell": "/bin/sh"}, "command")]
    for fields, field in cases:
        reply = await ex.open(name, **fields)
        assert reply["type"] == "error" and reply["code"] == "INVALID_MESSAGE", (fields, reply)
        assert reply["field"] == field, (fields, reply)
    reply = await ex.open(name, command=["/no/such/program"])
    assert reply["type"] == "terminal_error" and "/no/such/program" in reply["message"], reply
    await ex.send({"type": "eof"})  # nothing open
    assert (await ex.next_other())["type"] == "terminal_error"
    # Nothing changed: a default terminal still opens.
    assert (await ex.open(name))["type"] == "terminal_opened"


async def test_container_lost_is_reported(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    ex = await exec_client(server)
    assert (await ex.open(name))["type"] == "terminal_opened"
    await docker("restart", "-t", "0", name)
    closed = await ex.next_other()
    assert closed.get("containerLost") is True, closed
    # A program killed by a signal in a running container is not a lost container.
    assert (await ex.open(name, tty=False, command=["sh", "-c", "kill -9 $$"]))["type"] \
        == "terminal_opened"
    closed = await ex.next_other()
    assert closed == {"type": "terminal_closed", "reason": "Process exited", "exitCode": 137}


async def test_program_that_cannot_start_reports_on_stderr(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    ex = await exec_client(server)
    assert (await ex.open(name, tty=False, stdin=False, command=["no-such-program"]))["type"] \
        == "terminal_opened"
    closed = await ex.next_other()
    assert closed["exitCode"] in (126, 127), closed
    assert "stdout" not in ex.out and "no-such-program" in ex.out["stderr"], ex.out


async def test_eof_with_a_tty_is_ctrl_d(server: RunningServer, containers: Containers) -> None:
    name = await containers.run()
    ex = await exec_client(server)
    assert (await ex.open(name, command=["sh", "-c", "cat; echo done"]))["type"] == "terminal_opened"
    await ex.send({"type": "input", "data": "abc\n"})
    await ex.send({"type": "eof"})
    closed = await ex.next_other()
    assert closed == {"type": "terminal_closed", "reason": "Process exited", "exitCode": 0}
    assert ex.out[None].endswith("abc\r\ndone\r\n"), ex.out
