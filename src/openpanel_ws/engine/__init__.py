"""Docker Engine API adapter: everything that talks to the engine, and nothing else does.

- `client`: `DockerEngine` (requests, `stream_chunks`, exec hijack) and the `EngineError`
  tree every failure is translated into; the only aiohttp client code of the server.
- `streams`: `pump`, the one loop that feeds a stream's chunks to a sans-I/O parser.
- `logs`, `stats`: sans-I/O parsers of container log and stats streams (typed results).
- `events`: the one shared engine events stream (`EventsHub`).
- `exec`: interactive exec sessions for the terminal.
- `target`: where a host's engine is (`EngineTarget`, no I/O); `transport`: how
  `DockerEngine` reaches it (unix socket, TCP, TLS), `tls_stream` (exec attach over TLS),
  `ssh` (one SSH connection per host, a channel per engine connection).
"""
