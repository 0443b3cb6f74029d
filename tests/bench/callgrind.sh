#!/bin/sh
# Instructions per review of handle() (every pod a new template), by callgrind: repeatable on
# busy shared cores, unlike time. The difference of two runs (N and 3N reviews) leaves imports
# and start-up out. Usage: tests/bench/callgrind.sh [typical|large] [N] [app|floor]
# (app: the whole server app over WSGI, floor: the floor's app, instead of handle()).
set -eu
pod=${1:-large}; n=${2:-10}; wsgi=${3:+--wsgi $3}
python=${PYTHON:-.venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.$1" "$python" -m tests.bench.inprocess --callgrind $wsgi \
    --pods "$pod" --reviews "$1" >/dev/null 2>"$out/log.$1"
  sed -n 's/^summary: //p' "$out/cg.$1"
}
small=$(count "$n"); big=$(count $((n * 3)))
echo "$pod${3:+ ($3)}: $(( (big - small) / (n * 2) )) instructions per review"
