"""`python -m bench.explained URL`: what `?explain=true` costs a running server.

Sequential v1 JSON requests (one at a time, so the figures are latencies, not throughput) of one
record and of 1,000 records (the manifest's examples repeated), each with and without
`?explain=true`, for churn and digits; prints the median and 90th percentile per case. The
one-record throughput with and without explain (wrk) is `bench/ab.sh`'s business; see
bench/RESULTS.md, "Explanations (issue 21)".
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import httpx
import orjson

from service.manifest import Manifest, read_pointer

MODELS = Path(__file__).resolve().parents[1] / "models"
JSON = {"content-type": "application/json"}


def timings(client: httpx.Client, path: str, body: bytes, repeats: int) -> list[float]:
    """Milliseconds per request, sorted; every answer must be a 200."""
    client.post(path, content=body, headers=JSON).raise_for_status()  # warm up
    found = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.post(path, content=body, headers=JSON)
        found.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("url", help="a running service, e.g. http://127.0.0.1:8000 (loopback)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--models", type=Path, default=MODELS)
    args = parser.parse_args(argv)
    if httpx.URL(args.url).host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark sends traffic to loopback only")
    with httpx.Client(base_url=args.url, timeout=120) as client:
        for task in ("churn", "digits"):
            manifest = Manifest.load(args.models / task / read_pointer(args.models / task))
            examples = [example.record for example in manifest.examples]
            for records in (1, 1_000):
                batch = [examples[i % len(examples)] for i in range(records)]
                body = orjson.dumps({"records": batch})
                for query in ("", "?explain=true"):
                    times = timings(client, f"/v1/models/{task}/predict{query}", body, args.repeats)
                    p90 = times[max(0, int(0.9 * len(times)) - 1)]
                    print(  # noqa: T201  # the benchmark's output
                        f"{task:10} {records:>5} records {query or '(plain)':15} "
                        f"median {statistics.median(times):8.2f} ms  p90 {p90:8.2f} ms"
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
