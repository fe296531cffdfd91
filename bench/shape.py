"""`python -m bench.shape`: the floor plan of `service/` as a newcomer meets it (issue 17).

Prints the modules and their lines, the import cycles, what the model module imports, and the
service modules one v1 JSON prediction really passes through: a request is sent to the app in
process (the real routes, registry and models) while `sys.setprofile` notes which of our modules
run between the route's entry and its return, `InferenceSession.run` included.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import orjson

from service.app import create_app
from service.manifest import Manifest, read_pointer
from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SERVICE = REPO / "service"
ROUTE = (str(SERVICE / "api" / "v1.py"), "predict")


def modules() -> dict[str, Path]:
    """Module name -> file, for every module of `service/`."""
    found: dict[str, Path] = {}
    for path in sorted(SERVICE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The service modules `path` imports (a `from service.x import y` of a module y counts y)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("service"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("service"))
    return found & known.keys()


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets (empty when the graph is layered)."""
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        stack.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                found.append([*stack[stack.index(other) :], other])
            elif other not in state:
                visit(other, stack)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    return found


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for other in graph[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return seen


def request_path(models: Path, task: str) -> dict[str, list[str]]:
    """The service modules whose code runs inside the v1 predict route for one JSON record, and
    their functions called there, in order of first call."""
    folder = models / task
    record = Manifest.load(folder / read_pointer(folder)).examples[0].record
    body = orjson.dumps({"records": [record]})
    by_file = {str(path): name for name, path in modules().items()}
    seen: dict[str, list[str]] = {}
    inside: list[FrameType] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        if (code.co_filename, code.co_name) == ROUTE:
            if event == "call":
                inside.append(frame)
            elif event == "return" and inside:
                inside.pop()
        if inside and event in ("call", "c_call"):
            name = by_file.get(code.co_filename)
            if name is not None:
                seen.setdefault(name, [])
                if event == "call" and code.co_qualname not in seen[name]:
                    seen[name].append(code.co_qualname)

    async def send() -> None:
        app = create_app(Settings(models_dir=models, log_level="WARNING"))
        async with app.router.lifespan_context(app):  # loads the models, as at start-up
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://shape") as client:
                url, headers = f"/v1/models/{task}/predict", {"content-type": "application/json"}
                (await client.post(url, content=body, headers=headers)).raise_for_status()
                sys.setprofile(profile)  # the second request, warm, in this thread
                try:
                    answer = await client.post(url, content=body, headers=headers)
                finally:
                    sys.setprofile(None)
                answer.raise_for_status()

    asyncio.run(send())
    return seen


def report(models: Path, task: str) -> Iterator[str]:
    known = modules()
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    lines = {name: len(path.read_text("utf-8").splitlines()) for name, path in known.items()}
    packages = [name for name, path in known.items() if path.name == "__init__.py"]
    yield f"modules: {len(known)} ({len(packages)} of them package __init__ files)"
    yield f"lines: {sum(lines.values()):,}"
    yield f"import cycles: {cycles(graph) or 'none'}"
    yield f"service.model imports: {sorted(closure(graph, 'service.model'))}"
    path = request_path(models, task)
    yield f"a v1 JSON prediction runs code of {len(path)} modules, from its route to its answer:"
    for name, functions in path.items():
        yield f"  {name}: {', '.join(functions)}"
    yield "lines per module:"
    for name in sorted(known, key=lambda n: -lines[n]):
        yield f"  {lines[name]:6,}  {name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shape", description=__doc__)
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--task", default="churn")
    args = parser.parse_args(argv)
    for line in report(args.models, args.task):
        print(line)  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
