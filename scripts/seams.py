"""Measures how clean the seams are: the numbers issue 17's closing table reports.

Run: ``.venv/bin/python scripts/seams.py`` (no arguments; reads ``src/`` and ``tests/``).

- biggest module: the longest ``.py`` file under ``src/``.
- private reaches: ``x._name`` where ``x`` is not ``self``/``cls`` and no class or
  function of the same module defines ``_name``, plus ``from m import _name`` across
  modules. Each is a caller depending on another module's internals.
- aiohttp outside the edges: modules under ``gateways/`` that import aiohttp.
- blocking calls in async tests: calls inside an ``async def`` in ``tests/`` to the
  blocking helpers (``docker_sync``, ``subprocess.*``, ``time.sleep``) — each stalls the
  loop the server under test shares with the test — plus calls of the async helpers
  (``docker``, ``Containers.run``...) that are not awaited (they would do nothing).
- fixed sleeps in tests: ``asyncio.sleep``/``time.sleep`` calls with a literal delay.
- import circles in ``src/``: strongly connected groups of modules in the graph of
  imports, counted twice: the imports that run (module level, outside ``TYPE_CHECKING``),
  and every import (including type-only and in-function ones). Both should be empty.
- sans-I/O modules that need aiohttp: each module of ``SANS_IO`` is imported in a fresh
  interpreter where ``import aiohttp`` fails.
- long modules and functions: modules of ``src/`` over 500 lines, functions over 60.
- A private reach on a line that carries ``# seam-exception: <why>`` is listed apart, as
  a documented exception (the budget is one: the per-delivery hot path).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "openpanel_ws"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
EXCEPTION_MARK = "# seam-exception:"
# The modules that must import, and work, without aiohttp (plain synchronous code).
SANS_IO = [
    "openpanel_ws.protocol",
    "openpanel_ws.connection",
    "openpanel_ws.ratelimit",
    "openpanel_ws.sendqueue",
    "openpanel_ws.backoff",
    "openpanel_ws.auth",
    "openpanel_ws.client",
    "openpanel_ws.client.actions",
    "openpanel_ws.client.policy",
    "openpanel_ws.client.sansio",
    "openpanel_ws.client.subscriptions",
    "openpanel_ws.client.terminal",
    "openpanel_ws.client.outbox",
    "openpanel_ws.client.messages",
    "openpanel_ws.client.cli_text",
    "openpanel_ws.engine.stats",
    "openpanel_ws.gateways.logs.fanout",
    "openpanel_ws.gateways.logs.filters",
    "openpanel_ws.gateways.logs.event_text",
    "openpanel_ws.gateways.logs.messages",
    "openpanel_ws.gateways.hold",
    "openpanel_ws.gateways.containers.requests",
    "openpanel_ws.gateways.terminal.messages",
    "openpanel_ws.gateways.terminal.output",
    "openpanel_ws.gateways.terminal.lifecycle",
    "openpanel_ws.gateways.terminal.ring",
    "openpanel_ws.gateways.terminal.registry",
    "openpanel_ws.engine.eventdata",
    "openpanel_ws.outbound",
    "openpanel_ws.outbound.frames",
    "openpanel_ws.outbound.sansio",
    "openpanel_ws.clock",
    "openpanel_ws.handshake",
    "openpanel_ws.engine.target",
    "openpanel_ws.hosts.config",
    "openpanel_ws.hosts.status",
]
BLOCKING = {"docker_sync", "time.sleep", "subprocess.run", "subprocess.check_output",
            "subprocess.call", "subprocess.check_call", "subprocess.Popen", "os.system",
            "containers.cleanup_sync"}
ASYNC_HELPERS = {"docker", "containers.run", "containers.id_of", "containers.logs",
                 "containers.has_process", "containers.wait_logged", "containers.cleanup"}


def blocking_helpers(tree: ast.Module) -> set[str]:
    """Module-level sync functions that reach a blocking call, to a fixed point."""
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    names = set(BLOCKING)
    changed = True
    while changed:
        changed = False
        for name, func in funcs.items():
            if name in names:
                continue
            if any(isinstance(c, ast.Call) and dotted(c.func) in names for c in ast.walk(func)):
                names.add(name)
                changed = True
    return names


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def defined_privates(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return {n for n in names if is_private(n)}


def private_reaches(path: Path, *, cross_module: bool) -> list[str]:
    tree = ast.parse(path.read_text())
    own = defined_privates(tree) if cross_module else set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in {"self", "cls"}:
                continue
            if isinstance(base, ast.Call) and dotted(base.func) == "super":
                continue  # an override calling the method it overrides
            if node.attr not in own:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [f"{path.relative_to(ROOT)}:{node.lineno} import {a.name}"
                      for a in node.names if is_private(a.name)]
    return found


class AsyncCalls(ast.NodeVisitor):
    def __init__(self, blocking: set[str]) -> None:
        self.names = blocking
        self.blocking: list[int] = []
        self.sleeps: list[int] = []
        self.depth = 0
        self.awaited: set[int] = set()

    def visit_Await(self, node: ast.Await) -> None:
        self.awaited.add(id(node.value))
        self.generic_visit(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        saved, self.depth = self.depth, 0  # a sync helper runs where it is called
        self.generic_visit(node)
        self.depth = saved

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.awaited.add(id(node.body))  # `lambda: docker(...)` hands the coroutine on
        saved, self.depth = self.depth, 0
        self.generic_visit(node)
        self.depth = saved

    def visit_Call(self, node: ast.Call) -> None:
        name = dotted(node.func)
        if (self.depth and name in self.names) or (name in ASYNC_HELPERS and id(node) not in self.awaited):
            self.blocking.append(node.lineno)
        if name in {"asyncio.sleep", "time.sleep"} and node.args and isinstance(
            node.args[0], ast.Constant
        ) and node.args[0].value:
            self.sleeps.append(node.lineno)
        self.generic_visit(node)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT / "src").with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    return dotted(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}


def imported_modules(path: Path, modules: set[str], *, runtime_only: bool) -> set[str]:
    """The project's modules that `path` imports (a `from pkg import sub` names `pkg.sub`)."""
    tree = ast.parse(path.read_text())
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            if not runtime_only:
                for child in node.body:
                    visit(child, top)
            for child in node.orelse:
                visit(child, top)
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            if runtime_only:
                return  # runs when called, not when the module is imported
            top = False
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base in modules:
                found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
        for child in ast.iter_child_nodes(node):
            visit(child, top)

    visit(tree, True)
    found.discard(this)
    return found


def import_circles(src: list[Path], *, runtime_only: bool) -> list[list[str]]:
    """Strongly connected groups (Tarjan) of two or more modules, or one importing itself."""
    names = {module_name(p): p for p in src}
    graph = {m: sorted(imported_modules(p, set(names), runtime_only=runtime_only))
             for m, p in names.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return groups


NO_AIOHTTP = """
import importlib, importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "aiohttp" or name.startswith("aiohttp."):
            raise ImportError(f"{name} is blocked (sans-I/O check)")
        return None
sys.meta_path.insert(0, Refuse())
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
"""


def needs_aiohttp(modules: list[str]) -> list[str]:
    """The modules of `modules` that fail to import when aiohttp cannot be imported."""
    out = subprocess.run([sys.executable, "-c", NO_AIOHTTP, *modules], capture_output=True,
                         text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
                         check=False)
    if out.returncode:
        return [f"(the check itself failed: {out.stderr.strip().splitlines()[-1:]})"]
    return [line for line in out.stdout.splitlines() if line]


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [f"{path.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and n.end_lineno is not None and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]


def documented(reach: str) -> bool:
    where = reach.split(" ", 1)[0]
    file, _, line = where.rpartition(":")
    return EXCEPTION_MARK in (ROOT / file).read_text().splitlines()[int(line) - 1]


def main() -> int:
    src = sorted((ROOT / "src").rglob("*.py"))
    tests = sorted((ROOT / "tests").rglob("*.py"))
    biggest = max(src, key=lambda p: len(p.read_text().splitlines()))
    reaches = [r for p in src for r in private_reaches(p, cross_module=True)]
    all_other = [r for p in src for r in private_reaches(p, cross_module=False)]
    other_objects = [r for r in all_other if not documented(r)]
    exceptions = [r for r in all_other if documented(r)]
    aiohttp_gateways = [
        str(p.relative_to(ROOT)) for p in src
        if "gateways" in p.parts and any(
            isinstance(n, ast.Import | ast.ImportFrom)
            and any("aiohttp" in (getattr(n, "module", None) or a.name) for a in n.names)
            for n in ast.walk(ast.parse(p.read_text()))
        )
    ]
    blocking = sleeps = 0
    per_file: dict[str, int] = {}
    for path in tests:
        tree = ast.parse(path.read_text())
        visitor = AsyncCalls(blocking_helpers(tree))
        visitor.visit(tree)
        blocking += len(visitor.blocking)
        sleeps += len(visitor.sleeps)
        if visitor.blocking:
            per_file[str(path.relative_to(ROOT))] = len(visitor.blocking)
    print(f"biggest module: {biggest.relative_to(ROOT)} "
          f"({len(biggest.read_text().splitlines())} lines)")
    print(f"private reaches into other objects (x._name, x not self/cls): {len(other_objects)}")
    for reach in other_objects:
        print(f"  {reach}")
    print(f"documented exceptions ({EXCEPTION_MARK} ...): {len(exceptions)}")
    for reach in exceptions:
        print(f"  {reach}")
    print(f"private reaches across modules: {len(reaches)}")
    for reach in reaches:
        print(f"  {reach}")
    print(f"gateway modules importing aiohttp: {len(aiohttp_gateways)} {aiohttp_gateways}")
    print(f"blocking calls in async tests: {blocking}")
    for name, count in sorted(per_file.items()):
        print(f"  {name}: {count}")
    print(f"literal sleeps in tests: {sleeps}")
    for runtime_only, label in ((True, "import circles (imports that run)"),
                                (False, "import circles (every import, type-only included)")):
        circles = import_circles(src, runtime_only=runtime_only)
        print(f"{label}: {len(circles)}")
        for group in circles:
            print(f"  {' <-> '.join(group)}")
    failing = needs_aiohttp(SANS_IO)
    print(f"sans-I/O modules that need aiohttp: {len(failing)} of {len(SANS_IO)}")
    for line in failing:
        print(f"  {line}")
    long_modules = [f"{p.relative_to(ROOT)} ({len(p.read_text().splitlines())} lines)" for p in src
                    if len(p.read_text().splitlines()) > MAX_MODULE_LINES]
    print(f"modules over {MAX_MODULE_LINES} lines: {len(long_modules)}")
    for line in long_modules:
        print(f"  {line}")
    functions = [f for p in src for f in long_functions(p)]
    print(f"functions over {MAX_FUNCTION_LINES} lines: {len(functions)}")
    for line in functions:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
