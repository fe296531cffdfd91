"""`python -m bench` (or `bash bench/run.sh`): the serving benchmark, one table, RESULTS.md.

Runs on loopback only, every load bounded in time; every process it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import logging
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench import limits, mlserver_setup, report
from bench.cases import BATCH_SIZES, GRPC_BODIES, all_cases, baseline_cases
from bench.load import wrk_path
from bench.payloads import Body, churn_records, write_bodies
from bench.runner import REPO, Run, Setup, run_cases
from service.manifest import Manifest, read_pointer

CACHE = REPO / "bench" / ".cache"
RESULTS = REPO / "bench" / "RESULTS.md"
OUR_PACKAGES = (
    "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "orjson", "msgspec", "numpy",
    "onnxruntime", "prometheus_client", "pydantic",
)  # fmt: skip
MLSERVER_PACKAGES = (
    "mlserver", "mlserver-sklearn", "fastapi", "uvicorn", "uvloop", "scikit-learn", "onnxruntime",
    "pandas",
)  # fmt: skip
log = logging.getLogger("bench")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    wrk_path()  # fail before any setup if the load generator is missing
    quick = args.quick or args.smoke
    seconds = args.seconds or (1.0 if args.smoke else 4.0 if args.quick else 10.0)
    rounds = args.rounds or (1 if quick else 2)
    use_mlserver = not (args.no_mlserver or args.smoke)
    version_dir, manifest, bodies = committed_churn()
    log.info("raw onnxruntime limit, in-process")
    records = churn_records(manifest, max(BATCH_SIZES))
    raw = limits.measure(
        version_dir / manifest.onnx.file, manifest, records, [1, *BATCH_SIZES], 2.0
    )
    setup = Setup(CACHE, bodies, seconds, version_dir, baseline_src=args.baseline_src)
    if use_mlserver:
        log.info("MLServer virtualenv and pickle (cached in %s)", CACHE)
        setup = Setup(
            CACHE,
            bodies,
            seconds,
            version_dir,
            mlserver_setup.ensure_venv(CACHE),
            mlserver_setup.fit_pickle(CACHE, manifest),
            (version_dir / manifest.onnx.file).resolve(),
            args.baseline_src,
        )
    cases = all_cases(quick, use_mlserver)
    if args.baseline_src is not None:
        cases += baseline_cases(quick)
    if args.smoke:
        cases = [c for c in cases if c.records == 1 and c.server != "ours (2 workers)"]
    if args.grpc_only:
        cases = [c for c in cases if c.is_grpc]
    run = run_cases(setup, cases, rounds)
    text = _document(run, raw, setup, argv if argv is not None else sys.argv[1:], manifest)
    print(text)  # noqa: T201  # the benchmark's output is the table
    # A part of the cases must not replace the table of RESULTS.md (another --out may take it).
    partial = args.grpc_only and args.out == RESULTS
    if not args.no_write and not partial:
        report.write_section(args.out, text)
        log.info("wrote %s", args.out)
    return 0


def committed_churn() -> tuple[Path, Manifest, dict[str, Body]]:
    """The churn version the committed pointer names, its manifest, and the request bodies
    (written once to bench/.cache/bodies; the gRPC ones by tritonclient's messages, so this
    process must not import `service.protocol`)."""
    folder = REPO / "models" / "churn"
    version_dir = folder / read_pointer(folder)
    manifest = Manifest.load(version_dir)
    bodies = write_bodies(manifest, CACHE / "bodies", [1, *BATCH_SIZES], GRPC_BODIES)
    return version_dir, manifest, bodies


def _document(
    run: Run, raw: dict[int, limits.RawLimit], setup: Setup, argv: list[str], manifest: Manifest
) -> str:
    command = shlex.join(["bash", "bench/run.sh", *argv])
    parts = [
        f"### Serving benchmark, generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{command}`. Model: churn {manifest.version} (10 inputs, MLP). "
        f"Machine: {machine()}. Load: wrk, one thread, keep-alive, 127.0.0.1, "
        f"{setup.seconds:g} s per case after a 1 s warm-up; batch cases use 2 connections. "
        "gRPC: `bench/grpc_load.py` (grpc.aio, its own process, conns = calls in flight over "
        "at most 4 channels, one pre-serialized ModelInferRequest with raw contents as "
        "tritonclient sends it; rows/s counts the rows of the calls answered).",
        "",
        f"Ours: {_versions(sys.executable, OUR_PACKAGES)}; Python {platform.python_version()}.",
    ]
    if setup.mlserver_python is not None:
        parts.append(f"MLServer venv: {_versions(str(setup.mlserver_python), MLSERVER_PACKAGES)}.")
    parts += [
        "",
        "Ratios are of means over the rounds, against the comparable case (same records per "
        "request and connections) in this run. CPU ms/req: user+system CPU of the server "
        "processes (from /proc) divided by requests served. Errors: non-2xx plus socket errors.",
        "",
        report.table(run, raw),
        "",
        "Raw onnxruntime limit (in-process, one intra-op thread, the service's input arrays):",
        "",
        report.raw_table(raw),
        "",
        report.rss_table(run),
        "",
        "Targets (issues 5 and 20):",
        "",
        report.targets(run),
    ]
    return "\n".join(parts)


def machine() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    model = fields.get("Model name", "?").strip()
    return f"{model}, {fields.get('CPU(s)', '?').strip()} CPUs"


def _versions(python: str, packages: tuple[str, ...]) -> str:
    if python == sys.executable:
        return ", ".join(f"{name} {package_version(name)}" for name in packages)
    code = (
        "from importlib.metadata import version as v\n"
        f"print(', '.join(f'{{n}} {{v(n)}}' for n in {list(packages)!r}))"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


def package_version(name: str) -> str:
    try:
        return version(name)
    except Exception:
        return "not installed"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bash bench/run.sh", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="4 s per case, one round, fewer cases")
    parser.add_argument("--smoke", action="store_true", help="our service and the ceiling, 1 s")
    parser.add_argument("--no-mlserver", action="store_true", help="skip MLServer")
    parser.add_argument(
        "--grpc-only",
        action="store_true",
        help="only the gRPC cases (ours and MLServer); RESULTS.md is left as it is (see --out)",
    )
    parser.add_argument("--seconds", type=float, help="seconds per case")
    parser.add_argument("--rounds", type=int, help="rounds over all cases")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run the service from this source tree (e.g. `git archive HEAD service`)",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
