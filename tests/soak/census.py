"""What the soak reads inside the server's own process: resources, live objects, table
sizes and `tracemalloc` growth (plain code; `server.py` calls it between loop turns).

Nothing here is a hook of the gateway: it reads the application object that
`openpanel_ws.server.create_app` returns, the event loop and the garbage collector, the
way a debugger would. Counting every live instance of every `openpanel_ws` class (and
the length of every dict, set, list or deque they and the package's modules hold) needs
no list of names that the other modules' rewrites could make stale: whatever grows with
the count of past connections shows up under its own class or attribute.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import sys
import tempfile
import threading
import tracemalloc
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

PACKAGE = "openpanel_ws"
_SIZED = (dict, set, frozenset, list, deque)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def allocator() -> dict[str, int]:
    """Below tracemalloc: Python's allocated blocks, and glibc's heap (`mallinfo2`:
    bytes in use, free inside the heap, mmapped), where C libraries allocate."""
    out = {"python_blocks": sys.getallocatedblocks(), **pymalloc()}
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return out
    out.update(malloc_used_kib=info.uordblks // 1024, malloc_free_kib=info.fordblks // 1024,
               malloc_mmap_kib=info.hblkhd // 1024)
    return out


_PYMALLOC = {"# arenas allocated current": "arenas", "# arenas highwater mark": "arenas_highwater",
             "# bytes in allocated blocks": "pymalloc_used_kib",
             "# bytes in available blocks": "pymalloc_free_kib"}


def pymalloc() -> dict[str, int]:
    """Python's small-object allocator (`sys._debugmallocstats`, which writes to fd 2):
    arenas (1 MiB each, returned only when empty) and bytes used and free in them. Free
    bytes and arenas that grow while used bytes stay flat are fragmentation, not objects.
    Empty while tracemalloc runs (its hooks stand in front of pymalloc's statistics)."""
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    out: dict[str, int] = {}
    for line in text.splitlines():
        label, _, value = line.partition("=")
        key = _PYMALLOC.get(label.strip())
        if key is not None:
            number = int(value.strip().replace(",", ""))
            out[key] = number // 1024 if key.endswith("_kib") else number
    return out


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _attributes(obj: Any) -> Iterator[tuple[str, Any]]:
    """(name, value) of an object's instance attributes: its __dict__ and its slots."""
    values = getattr(obj, "__dict__", None)
    if isinstance(values, dict):
        yield from values.items()
    for klass in type(obj).__mro__:
        for name in klass.__dict__.get("__slots__", ()):
            if name in ("__dict__", "__weakref__"):
                continue
            try:
                yield name, object.__getattribute__(obj, name)
            except AttributeError:
                continue


def objects_and_tables() -> tuple[dict[str, int], dict[str, int]]:
    """Live instances per `openpanel_ws` class, and the summed length of every sized
    attribute of those instances ("module.Class.attr") and of every module global
    ("module.NAME"). Collects garbage first, so only reachable objects count."""
    gc.collect()
    objects: Counter[str] = Counter()
    tables: Counter[str] = Counter()
    for obj in gc.get_objects():
        klass = type(obj)
        module = klass.__dict__.get("__module__") if isinstance(klass.__dict__, dict) else None
        module = module if isinstance(module, str) else getattr(klass, "__module__", "")
        if not isinstance(module, str) or not module.startswith(PACKAGE) or isinstance(obj, type):
            continue
        key = f"{module}.{klass.__qualname__}"
        objects[key] += 1
        for name, value in _attributes(obj):
            if isinstance(value, _SIZED):
                tables[f"{key}.{name}"] += len(value)
    for name, module in list(sys.modules.items()):
        if not name.startswith(PACKAGE) or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, _SIZED) and not attr.startswith("__"):
                tables[f"{name}.{attr}"] = len(value)
    return dict(objects), dict(tables)


def tracked(app: web.Application) -> dict[str, int]:
    """The named things the CI slice asserts on: open sessions, timer wheel entries,
    loop timers, asyncio tasks, handshake guard entries, live terminal sessions."""
    from openpanel_ws.server import CLIENTS_KEY, GUARD_KEY

    loop = asyncio.get_running_loop()
    counts = {
        "sessions": len(app[CLIENTS_KEY]),
        "tasks": len(asyncio.all_tasks(loop)),
        # Armed loop timers (cancelled handles wait in the heap until popped: not counted).
        "loop_timers": sum(1 for h in getattr(loop, "_scheduled", ()) if not h.cancelled()),
        "threads": threading.active_count(),
    }
    guard = app.get(GUARD_KEY)
    if guard is not None:
        counts["handshake_entries"] = len(getattr(guard, "_conns", ()))
        counts["unauthenticated"] = guard.pending.count
    wheel = _endpoint_attr(app, "wheel")
    if wheel is not None:
        counts["wheel_entries"] = len(wheel)
        counts["wheel_slots"] = len(getattr(wheel, "_slots", ()))
        counts["wheel_heap"] = len(getattr(wheel, "_heap", ()))
    return counts


def _endpoint_attr(app: web.Application, name: str) -> Any:
    """An attribute shared by every route's `Endpoint` (the handler's bound object)."""
    for route in app.router.routes():
        owner = getattr(route.handler, "__self__", None)
        if owner is not None and hasattr(owner, name):
            return getattr(owner, name)
    return None


class Tracer:
    """`tracemalloc` snapshots: top growth since the previous sample and since the
    reference one (taken after warm-up, `mark_reference`)."""

    def __init__(self, frames: int) -> None:
        self.enabled = frames > 0
        self.reference: tracemalloc.Snapshot | None = None
        self.previous: tracemalloc.Snapshot | None = None
        if self.enabled:
            tracemalloc.start(frames)

    def _snapshot(self) -> tracemalloc.Snapshot:
        here = os.path.dirname(__file__)
        return tracemalloc.take_snapshot().filter_traces((
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, os.path.join(here, "*")),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
            tracemalloc.Filter(False, "<unknown>"),
        ))

    def mark_reference(self) -> None:
        if self.enabled:
            self.reference = self.previous = self._snapshot()

    def sample(self, top: int) -> dict[str, Any]:
        if not self.enabled:
            return {}
        current, _peak = tracemalloc.get_traced_memory()
        out: dict[str, Any] = {"traced_kib": current // 1024,
                               "tracemalloc_overhead_kib": tracemalloc.get_tracemalloc_memory() // 1024}
        if self.reference is None:
            return out
        snapshot = self._snapshot()
        assert self.previous is not None
        out["top_growth_interval"] = _top(snapshot, self.previous, top)
        out["top_growth_total"] = _top(snapshot, self.reference, top)
        self.previous = snapshot
        return out


def _top(snapshot: tracemalloc.Snapshot, base: tracemalloc.Snapshot, top: int) -> list[dict[str, Any]]:
    stats = [s for s in snapshot.compare_to(base, "lineno") if s.size_diff > 0][:top]
    return [{"where": f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
             "size_diff_kib": round(s.size_diff / 1024, 1), "count_diff": s.count_diff,
             "size_kib": round(s.size / 1024, 1)} for s in stats]


def _short(filename: str) -> str:
    """A path from the package or library root: `openpanel_ws/engine/events.py`, `aiohttp/web_ws.py`."""
    for marker in ("/site-packages/", "/src/", "/lib/python3."):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3." and "/" in tail else tail
    return filename
