#!/usr/bin/env bash
# A/B of two builds of `imgcls serve` (2 workers) on the small model: each server alone, alternating (the order
# reversed every pair); each run times launch -> /healthz/ready (20 ms polls), then a 3 s warm-up and wrk for 8 s
# at 32 connections with one Fashion-MNIST PNG. Medians at the end.
#
#   benchmarks/ab_serve.sh A_IMGCLS A_DIR B_IMGCLS B_DIR [PAIRS] > benchmarks/results/ab-serve-<date>.txt
#
# A_IMGCLS / B_IMGCLS: the `imgcls` executable of each build; A_DIR / B_DIR: the checkout it runs in. An older
# commit needs no install of its own: `git worktree add ../before COMMIT`, then a venv whose site-packages
# holds two .pth files, one naming ../before and one naming this project's .venv site-packages, and an
# `imgcls` script in it that runs `training.cli.main` (or `service.cli.main`) under `if __name__ == "__main__"`.
# Needs wrk and a model published by benchmarks/finetune.py (MODEL_ROOT, MODEL below).
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,11p' "$0"; exit 2; }
A_BIN=$1 A_DIR=$2 B_BIN=$3 B_DIR=$4 PAIRS=${5:-6}
REPO=$(cd "$(dirname "$0")/.." && pwd)
MODEL_ROOT=${MODEL_ROOT:-$REPO/var/benchmarks/finetune/models}
MODEL=${MODEL:-fashion-mnist-7}
IMAGE=${IMAGE:-$REPO/var/benchmarks/serve_load/fashion-mnist-0-28x28.png}  # written by benchmarks/serve_load.py
LUA=$REPO/benchmarks/multipart.lua
PORT=${PORT:-18765}
URL=http://127.0.0.1:$PORT/v1/models/$MODEL/classify
echo "# $(date -u +%FT%TZ), $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); $(uptime)"
echo "# A: $A_BIN in $A_DIR; B: $B_BIN in $B_DIR; $MODEL from $MODEL_ROOT; per run: requests/s, p99, seconds to ready"
one() { # $1: A or B
    local bin dir started ready
    if [ "$1" = A ]; then bin=$A_BIN dir=$A_DIR; else bin=$B_BIN dir=$B_DIR; fi
    started=$(date +%s.%N)
    (cd "$dir" && exec "$bin" serve --no-auth --workers 2 --port "$PORT" --model-root "$MODEL_ROOT" >/dev/null 2>&1) &
    local server=$!
    for _ in $(seq 1500); do curl -sf "http://127.0.0.1:$PORT/healthz/ready" >/dev/null && break; sleep 0.02; done
    ready=$(echo "$(date +%s.%N) - $started" | bc)
    IMAGE=$IMAGE FIELD=images wrk -s "$LUA" -t2 -c32 -d3s "$URL" >/dev/null 2>&1
    local out
    out=$(IMAGE=$IMAGE FIELD=images wrk -s "$LUA" -t2 -c32 -d8s --latency "$URL" 2>&1)
    echo "$1 $(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1 == "99%" {print $2}') $ready"
    pkill -TERM -f "serve --no-auth --workers 2 --port $PORT" || true
    wait "$server" 2>/dev/null || true
    sleep 1
}
results=$(for pair in $(seq "$PAIRS"); do
    if [ $((pair % 2)) = 1 ]; then one A; one B; else one B; one A; fi
done)
echo "$results"
median() { # $1: side, $2: column, $3: printf format of one figure, $4: its unit
    echo "$results" | awk -v s="$1" -v c="$2" '$1 == s {print $c}' | sort -n | awk -v s="$1" -v f="$3" -v u="$4" \
        '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s median " f " %s (min " f ", max " f ", %d runs)\n", s, m, u, v[1], v[NR], NR}'
}
for side in A B; do
    median $side 2 "%.0f" "requests/s"
    median $side 4 "%.2f" "s to ready"
done
