"""The web console served at `/` and its REST helper `GET /api/containers` (docs/console.md)."""
