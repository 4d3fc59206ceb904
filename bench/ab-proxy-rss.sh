#!/usr/bin/env bash
# A/B of two homespotd binaries on the proxy's memory: for each of three interleaved rounds,
# each binary serves the 64-connection keep-alive load (RSS sampled half-way) and then 1,000
# idle client connections (RSS after 4 s). Needs root. For a change's effect on RSS beyond the
# noise of single bench/proxy.sh runs.
#   bench/ab-proxy-rss.sh OLD_BINARY NEW_BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2
cargo build --release -q -p loadgen
LG=$PWD/target/release/loadgen
DUR=${DURATION:-6}
OUT=$PWD/bench/out/ab-rss-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
PREFIX=hsab
# shellcheck source=bench/lib.sh
source bench/lib.sh
start_origin
cat > "$OUT/homespotd.toml" <<CFG
[server]
lease_db = "$OUT/leases.redb"
status_socket = "$OUT/status.sock"
[proxy]
port = 3128
allow_destinations = ["10.89.0.0/24"]
header_timeout = "60s"
max_connections = 4096
max_connections_per_client = 4096
[[link]]
name = "lan"
interface = "lan0"
address = "10.89.1.1/24"
pools = ["10.89.1.100-10.89.1.199"]
CFG
# A binary from before `status_socket` existed refuses the key: it gets the file without it.
grep -v status_socket "$OUT/homespotd.toml" > "$OUT/homespotd-old.toml"
conf() { if "$1" --help 2>/dev/null | grep -q "Show what the running"; then echo "$OUT/homespotd.toml"; else echo "$OUT/homespotd-old.toml"; fi; }
kb() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
run() { # name binary
    rm -f "$OUT/leases.redb"
    local cfg; cfg=$(conf "$2")
    ip netns exec $S "$2" --config "$cfg" --log warn > "$OUT/$1.log" 2>&1 & local hs=$!
    sleep 1
    ip netns exec $C "$LG" --mode proxy --connect 10.89.1.1:3128 --origin 10.89.0.2:8080 --duration "$DUR" > "$OUT/load-$1.txt" &
    local lg=$!
    sleep $((DUR / 2)); local load; load=$(kb $hs)
    # Where it is: resident kB per mapping (the executable's, the heap, anonymous, stacks).
    awk '/^[0-9a-f]+-/ {name=$6; if (name=="") name="[anon]"; sub(/.*\//, "", name)} /^Rss:/ {r[name]+=$2} END {for (n in r) if (r[n] >= 64) printf "%s=%d ", n, r[n]; print ""}' /proc/$hs/smaps > "$OUT/smaps-$1-$(date +%s%N).txt"
    wait $lg
    local rps; rps=$(sed -n 's/.*rps=\([0-9.]*\).*/\1/p' <<<"$(tail -1 "$OUT/load-$1.txt")")
    kill $hs; wait $hs 2>/dev/null || true
    rm -f "$OUT/leases.redb"
    ip netns exec $S "$2" --config "$cfg" --log warn >> "$OUT/$1.log" 2>&1 & hs=$!
    sleep 1
    ip netns exec $C "$LG" --mode idle --connect 10.89.1.1:3128 --origin 10.89.0.2:8080 --connections 1000 --duration 20 --hold 6 > /dev/null &
    lg=$!
    sleep 4; local idle; idle=$(kb $hs); wait $lg
    kill $hs; wait $hs 2>/dev/null || true
    echo "$1 rps=$rps rss_under_load_kb=$load rss_1000_idle_kb=$idle"
}
for round in 1 2 3; do
    run old "$OLD"
    run new "$NEW"
done | tee "$OUT/ab.txt"
