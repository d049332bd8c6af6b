"""Docker Engine API adapter."""
