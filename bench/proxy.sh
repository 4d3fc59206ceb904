#!/usr/bin/env bash
# Proxy benchmark, one run on one machine: 64 connections, 1 KiB responses from nginx in the
# `net` namespace; direct vs homespotd vs tinyproxy vs squid, all proxies on the same HomeSpot
# namespace; CONNECT+TLS; 1,000 idle client connections on homespotd. Needs root.
#   bench/proxy.sh                 (~3 minutes)
#   DURATION=5 bench/proxy.sh      shorter
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup --bench
cargo build --release -q -p homespot -p loadgen
BIN=$PWD/target/release/homespotd
# The router image ships a static build (no shared libc pages in its RSS) without the
# `bluetooth` feature (image/build's default); measure that too.
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -q -p homespot --no-default-features --target x86_64-unknown-linux-gnu
STATIC=$PWD/target/x86_64-unknown-linux-gnu/release/homespotd
# What image/build ships: static musl, linked as it links it (measured too; the target's figure stays the static glibc
# build's, as in every earlier run).
rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1
rustup component add llvm-tools >/dev/null 2>&1
CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=$PWD/image/hot-link/rust-lld \
    cargo build --release -q -p homespot --no-default-features --target x86_64-unknown-linux-musl
MUSL=$PWD/target/x86_64-unknown-linux-musl/release/homespotd
LG=$PWD/target/release/loadgen
DUR=${DURATION:-10}
OUT=$PWD/bench/out/proxy-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
chmod 777 "$OUT"
PREFIX=hspb
# shellcheck source=bench/lib.sh
source bench/lib.sh
# For the direct path the HomeSpot namespace routes between its links.
ip netns exec $S sysctl -qw net.ipv4.ip_forward=1
ip -n $C route add default via 10.89.1.1
ip -n $N route add 10.89.1.0/24 via 10.89.0.1

start_origin tls

cat > "$OUT/homespotd.toml" <<CFG
[server]
lease_db = "$OUT/leases.redb"
status_socket = "$OUT/status.sock"
[proxy]
port = 3128
allow_destinations = ["10.89.0.0/24"]
connect_ports = [443, 8443]
header_timeout = "60s"
max_connections = 4096
max_connections_per_client = 4096
[[link]]
name = "lan"
interface = "lan0"
address = "10.89.1.1/24"
pools = ["10.89.1.100-10.89.1.199"]
CFG
ip netns exec $S "$BIN" --config "$OUT/homespotd.toml" --log warn > "$OUT/homespotd.log" 2>&1 & HS=$!; PIDS+=($HS)

cat > "$OUT/tinyproxy.conf" <<CFG
Port 3129
Listen 10.89.1.1
MaxClients 100
Allow 10.89.1.0/24
ConnectPort 8443
LogLevel Critical
CFG
ip netns exec $S tinyproxy -d -c "$OUT/tinyproxy.conf" > "$OUT/tinyproxy.log" 2>&1 & TP=$!; PIDS+=($TP)

cat > "$OUT/squid.conf" <<CFG
http_port 10.89.1.1:3130
acl lan src 10.89.1.0/24
acl tls port 8443
http_access deny CONNECT !tls
http_access allow lan
http_access deny all
cache deny all
access_log none
cache_log $OUT/squid-cache.log
pid_filename $OUT/squid.pid
coredump_dir $OUT
workers 1
CFG
ip netns exec $S squid -N -f "$OUT/squid.conf" > "$OUT/squid.log" 2>&1 & SQ=$!; PIDS+=($SQ)
sleep 3

rss() { awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$1/status 2>/dev/null || echo "?"; }
# squid -N runs one process; its RSS is that of the main pid.
summary="$OUT/summary.md"
printf '| path | mode | req/s | p50 ms | p99 ms | errors | proxy RSS under load |\n|---|---|---|---|---|---|---|\n' > "$summary"

load() { # name mode connect extra-args... ; pid-to-sample
    local name=$1 mode=$2 connect=$3 pid=$4; shift 4
    ip netns exec $C "$LG" --mode "$mode" --connect "$connect" --origin "$ORIGIN" --duration "$DUR" "$@" > "$OUT/load-$name.txt" &
    local lg=$!
    sleep $((DUR / 2))
    local r="-"
    [[ "$pid" != "-" ]] && r=$(rss "$pid") && grep -E '^(Rss|Anonymous|Private|Shared)' /proc/$pid/smaps_rollup > "$OUT/smaps-$name.txt" 2>/dev/null && cp /proc/$pid/smaps "$OUT/smaps-full-$name.txt" 2>/dev/null
    wait $lg
    local line; line=$(tail -1 "$OUT/load-$name.txt")
    local req rps p50 p99 err
    req=$(sed -n 's/.*rps=\([0-9.]*\).*/\1/p' <<<"$line")
    p50=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    err=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$line")
    RPS[$name]="${RPS[$name]:-} $req"
    RSSV[$name]=$r
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$mode$( [[ " $* " == *" --no-keepalive "* ]] && echo ' (no keep-alive)')" "$req" "$p50" "$p99" "$err" "$r" | tee -a "$summary"
}

declare -A RPS RSSV
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ORIGIN=10.89.0.2:8080
# Direct and proxied keep-alive alternate three times; the machine is shared and noisy.
for round in 1 2 3; do
    load direct direct 10.89.0.2:8080 -
    load homespotd proxy 10.89.1.1:3128 $HS
done
load homespotd-close proxy 10.89.1.1:3128 $HS --no-keepalive
load tinyproxy proxy 10.89.1.1:3129 $TP --no-keepalive
load squid proxy 10.89.1.1:3130 $SQ
ORIGIN=10.89.0.2:8443
load direct-tls tls 10.89.0.2:8443 -
load homespotd-tls connect-tls 10.89.1.1:3128 $HS
load tinyproxy-tls connect-tls 10.89.1.1:3129 $TP
load squid-tls connect-tls 10.89.1.1:3130 $SQ
echo "homespotd peak RSS after load: $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$HS/status)" | tee -a "$summary"

# The static build under the same keep-alive load.
kill $HS; wait $HS 2>/dev/null || true
ip netns exec $S "$STATIC" --config "$OUT/homespotd.toml" --log warn > "$OUT/homespotd-static.log" 2>&1 & HS=$!; PIDS+=($HS)
sleep 1
ORIGIN=10.89.0.2:8080
load homespotd-static proxy 10.89.1.1:3128 $HS
kill $HS; wait $HS 2>/dev/null || true
ip netns exec $S "$MUSL" --config "$OUT/homespotd.toml" --log warn > "$OUT/homespotd-musl.log" 2>&1 & HS=$!; PIDS+=($HS)
sleep 1
load homespotd-musl proxy 10.89.1.1:3128 $HS
# How much of the binary's code is resident (the rest of the RSS is heap and stacks): with the
# code it runs placed first (homespot/hot-code.txt) about half of it; a stale list shows here.
code() { awk '/r-xp/ && /homespotd/ {f=1; next} f && /^Size:/ {s=$2} f && /^Rss:/ {printf "%.1f of %.1f MB", $2/1024, s/1024; f=0}' "$1"; }
echo "code resident under load: static $(code "$OUT/smaps-full-homespotd-static.txt"), musl $(code "$OUT/smaps-full-homespotd-musl.txt")" | tee -a "$summary"

# 1,000 idle keep-alive client connections on a fresh homespotd, each build.
idle() {
    local name=$1 bin=$2
    kill $HS; wait $HS 2>/dev/null || true
    ip netns exec $S "$bin" --config "$OUT/homespotd.toml" --log warn > "$OUT/$name-idle.log" 2>&1 & HS=$!; PIDS+=($HS)
    sleep 1
    local base; base=$(rss $HS)
    ip netns exec $C "$LG" --mode idle --connect 10.89.1.1:3128 --origin "$ORIGIN" --connections 1000 --duration 20 --hold 6 > "$OUT/idle-$name.txt" &
    local lg=$!
    sleep 4
    local held; held=$(rss $HS)
    wait $lg
    echo "$name with $(cat "$OUT/idle-$name.txt") idle client connections: RSS $held (at start $base)" | tee -a "$summary"
}
idle homespotd "$BIN"
idle homespotd-static "$STATIC"
idle homespotd-musl "$MUSL"
echo "stripped sizes: homespotd $(( $(stat -c %s "$BIN") / 1024 )) KiB, static $(( $(stat -c %s "$STATIC") / 1024 )) KiB, musl $(( $(stat -c %s "$MUSL") / 1024 )) KiB" | tee -a "$summary"
d=$(median "${RPS[direct]}"); h=$(median "${RPS[homespotd]}")
echo "median keep-alive req/s: direct $d, homespotd $h, ratio $(awk -v a="$h" -v b="$d" 'BEGIN {printf "%.2f", a/b}')" | tee -a "$summary"
# For bench/check.
awk -v a="$h" -v b="$d" 'BEGIN { printf "FIGURE proxy_keepalive_vs_direct %.3f\n", a/b }'
t=$(median "${RPS[homespotd-tls]}"); q=$(median "${RPS[squid-tls]}")
awk -v a="$t" -v b="$q" 'BEGIN { printf "FIGURE proxy_connect_tls_vs_squid %.3f\n", a/b }'
echo "FIGURE proxy_static_rss_mb $(sed 's/[^0-9.]//g' <<<"${RSSV[homespotd-static]}")"
# The musl build image/build ships, under the same load (listed by bench/check, no target).
echo "FIGURE proxy_musl_rss_mb $(sed 's/[^0-9.]//g' <<<"${RSSV[homespotd-musl]}")"
echo "results in $OUT"
