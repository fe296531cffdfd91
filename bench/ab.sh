#!/usr/bin/env bash
# Two service trees serving at once, wrk alternating between them: a before/after figure for one
# case when the machine's noise from round to round is larger than the difference (bench/README.md).
#
#   bash bench/ab.sh BASELINE_SRC BODY_FILE PATH [ROUNDS] [SECONDS] [CONNECTIONS] [CONTENT_TYPE]
#   bash bench/ab.sh /tmp/base bench/.cache/bodies/v1-1.body /v1/models/churn/predict 6 5 16
# (the bodies are those `bash bench/run.sh` writes; `--smoke --no-write` is enough to write them)
#
# Both run one worker on the committed models, on loopback ports 18631 (this tree) and 18632
# (BASELINE_SRC); each round runs both, in turn, the order reversed every other round.
# AFTER_MODELS / BEFORE_MODELS serve other registries instead, e.g. the same tree (BASELINE_SRC=.)
# on two registries: what a model's own change costs (bench/RESULTS.md, missing values).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=$(cd "$1" && pwd); BODY=$2; ROUTE=$3
ROUNDS=${4:-6}; SECONDS_EACH=${5:-5}; CONNS=${6:-16}; TYPE=${7:-application/json}
HERE=$(pwd); PY="$HERE/.venv/bin/python"; LOGS="$HERE/bench/.cache/logs"; mkdir -p "$LOGS"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
AFTER_MODELS=$(cd "${AFTER_MODELS:-models}" && pwd); BEFORE_MODELS=$(cd "${BEFORE_MODELS:-models}" && pwd)
serve() {  # serve SRC PORT MODELS
  (cd "$1" && PREDICT_PORT=$2 PREDICT_MODELS_DIR="$3" PYTHONPATH="$1" \
    exec "$PY" -m service >"$LOGS/ab-$2.log" 2>&1) &
  PIDS+=($!)
}
rate() {  # rate PORT SECONDS: requests per second of one wrk run
  wrk -t1 -c"$CONNS" -d"$2"s -s bench/post.lua "http://127.0.0.1:$1$ROUTE" -- "$BODY" "$TYPE" \
    | sed -n 's/^BENCH_JSON //p' \
    | "$PY" -c 'import json,sys; d=json.load(sys.stdin); assert not d["status"], d; print(round(d["requests"]*1e6/d["duration_us"]))'
}
serve "$HERE" 18631 "$AFTER_MODELS"; serve "$BASE" 18632 "$BEFORE_MODELS"
for port in 18631 18632; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break; sleep 0.2; done
  rate "$port" 1 >/dev/null  # warm-up
done
for round in $(seq "$ROUNDS"); do
  order="18631 18632"; [ $((round % 2)) = 0 ] && order="18632 18631"
  for port in $order; do echo "$port $(rate "$port" "$SECONDS_EACH")"; done
done | awk '{ name = ($1 == 18631) ? "after " : "before"; print "round", int((NR + 1) / 2), name, $2, "req/s";
             sum[$1] += $2; n[$1]++ }
     END { printf "mean: after %.0f, before %.0f req/s; after / before %.3f\n",
           sum[18631] / n[18631], sum[18632] / n[18632], (sum[18631] / n[18631]) / (sum[18632] / n[18632]) }'
