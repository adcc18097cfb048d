#!/usr/bin/env bash
# Benchmark: simulated-district generation throughput and peak memory.
# Usage: bench/generate.sh [small|nanhai ...]   (default: small nanhai)
# Needs GNU time (/usr/bin/time, Debian package `time`) and ~6 GB free disk for nanhai.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); date: $(date -u +%F)"
for scale in "${@:-small nanhai}"; do
  for s in $scale; do
    /usr/bin/time -v ./target/release/tongchou sim generate --scale "$s" --seed 2015 --out "$work/$s" --json \
      >"$work/$s.json" 2>"$work/$s.time"
    python3 - "$s" "$work/$s.json" "$work/$s.time" <<'PY'
import json, re, sys
scale, summary, timing = sys.argv[1], json.load(open(sys.argv[2])), open(sys.argv[3]).read()
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", timing).group(1))
print(f"{scale}: {summary['records']:,} records in {summary['seconds']:.1f} s = "
      f"{summary['records']/summary['seconds']:,.0f} records/s; peak RSS {rss/1024:,.0f} MiB; "
      f"{summary['bytes']/1e6:,.0f} MB on disk; {summary['units']} units, {summary['resources']} resources, {summary['fields']} fields")
PY
    rm -rf "${work:?}/$s"
  done
done
