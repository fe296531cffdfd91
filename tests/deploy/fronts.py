"""The nginx fronts of the deployments (compose's load balancer, each Kubernetes pod's proxy), read
from their files and adapted to run natively on loopback for the tests."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from .conftest import ROOT

FRONTS = ["compose", "kubernetes"]
Block = list[tuple[str, list[str]]]


def front_config(front: str) -> str:
    """The nginx.conf of a front, as deployed."""
    if front == "compose":
        return (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    configmap = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "nginx.yaml").read_text())
    text: str = configmap["data"]["nginx.conf"]
    return text


def directives(config: str, path: tuple[str, ...]) -> dict[str, str]:
    """The simple directives of the block at `path` (e.g. ("http", "server")), name -> value."""
    blocks: dict[tuple[str, ...], Block] = {}
    stack: list[str] = []
    words: list[str] = []
    text = re.sub(r"#[^\n]*", "", config)
    for token in re.findall(r'[{};]|"[^"]*"|[^\s{};"]+', text):
        if token == "{":
            stack.append(words[0])
            words = []
        elif token == "}":
            stack.pop()
        elif token == ";":
            blocks.setdefault(tuple(stack), []).append((words[0], words[1:]))
            words = []
        else:
            words.append(token)
    return {name: " ".join(args) for name, args in blocks.get(path, [])}


def local_config(
    config: str,
    prefix: Path,
    port: int,
    upstreams: list[int],
    overrides: dict[str, str] | None = None,
    location: str = "",
) -> str:
    """The deployed config with loopback addresses (the upstream server line repeated for each
    of `upstreams`), files under `prefix`, an access log of status and request line,
    `overrides` (each directive must be there exactly once) and lines added to `location /`."""
    config = re.sub(r"(?m)^\s*(pid|error_log|access_log|\w+_temp_path)\s[^;]*;\n", "", config)
    config = _replace_once(config, r"listen 8080;", f"listen 127.0.0.1:{port};")
    server = re.search(r"server (?:api|127\.0\.0\.1):8000([^;]*?)(?: resolve)?;", config)
    assert server is not None, "no upstream server line"
    servers = "\n        ".join(f"server 127.0.0.1:{p}{server[1]};" for p in upstreams)
    config = _replace_once(config, re.escape(server[0]), servers)
    config = _replace_once(config, r"location / \{\n", f"location / {{\n{location}")
    for name, value in (overrides or {}).items():
        config = _replace_once(config, rf"(?m)^(\s*{name}) [^;]*;", rf"\1 {value};")
    temp = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    http = (
        f"http {{\n    log_format probe '$status \"$request\"';\n"
        f"    access_log {prefix / 'access.log'} probe;\n{temp}"
    )
    config = _replace_once(config, r"(?m)^http \{\n", http)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must write under `prefix`
    main = f"daemon off;\npid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} info;\n"
    return user + main + config


def _replace_once(text: str, pattern: str, replacement: str) -> str:
    replaced, count = re.subn(pattern, replacement, text)
    assert count == 1, f"{pattern!r} matched {count} times"
    return replaced
