"""The Docker hosts a gateway serves: configuration (config.py, no I/O), status rules
(status.py, no I/O) and the registry with one engine and events hub per host
(registry.py). docs/protocol.md "Hosts"; docs/hosts.md."""
