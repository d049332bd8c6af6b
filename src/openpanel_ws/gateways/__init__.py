"""One package or module per endpoint (`containers`, `logs`, `metrics`, `terminal`);
`base` holds what they share (`Gateway[StateT]`, `Session[StateT]`) and `access` the
one container scope check."""
