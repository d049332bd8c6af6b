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
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
        if self.depth and name in self.names:
            self.blocking.append(node.lineno)
        elif name in ASYNC_HELPERS and id(node) not in self.awaited:
            self.blocking.append(node.lineno)
        if name in {"asyncio.sleep", "time.sleep"} and node.args and isinstance(
            node.args[0], ast.Constant
        ) and node.args[0].value:
            self.sleeps.append(node.lineno)
        self.generic_visit(node)


def main() -> int:
    src = sorted((ROOT / "src").rglob("*.py"))
    tests = sorted((ROOT / "tests").rglob("*.py"))
    biggest = max(src, key=lambda p: len(p.read_text().splitlines()))
    reaches = [r for p in src for r in private_reaches(p, cross_module=True)]
    other_objects = [r for p in src for r in private_reaches(p, cross_module=False)]
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
    print(f"private reaches across modules: {len(reaches)}")
    for reach in reaches:
        print(f"  {reach}")
    print(f"gateway modules importing aiohttp: {len(aiohttp_gateways)} {aiohttp_gateways}")
    print(f"blocking calls in async tests: {blocking}")
    for name, count in sorted(per_file.items()):
        print(f"  {name}: {count}")
    print(f"literal sleeps in tests: {sleeps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
