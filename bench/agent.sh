#!/usr/bin/env bash
# Agent benchmark, one run on one machine (issue 5, acceptance 7): 64 connections, 1 KiB
# responses from nginx in the `net` namespace, at a HomeSpot. A client using the HomeSpot proxy
# directly vs the same client through homespot-agent's local proxy (which forwards to the
# HomeSpot proxy over the global addresses). Median of 3 interleaved runs each; the CPU time
# the agent and homespotd spend per request; the agent's RSS idle (after start, and after the
# load). Needs root.
#   bench/agent.sh                 (~2 minutes)
#   DURATION=5 bench/agent.sh      shorter
#   CPUS=shared bench/agent.sh     laptop and HomeSpot on the same two cores
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup --bench
cargo build --release -q -p homespot -p homespot-agent -p loadgen
HS_BIN=$PWD/target/release/homespotd
AGENT=${AGENT_BIN:-$PWD/target/release/homespot-agent}
LG=$PWD/target/release/loadgen
DUR=${DURATION:-10}
OUT=$PWD/bench/out/agent-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
PREFIX=hsab
# A HomeSpot and a laptop are two machines: by default the HomeSpot side (homespotd, nginx)
# runs on CPU 0 and the laptop side (load generator, agent) on CPU 1. CPUS=shared lets all of
# it share both cores (the agent's hop then competes with the HomeSpot for the same CPU).
ON_HS=""; ON_LAPTOP=""
if [[ "${CPUS:-split}" == split ]]; then ON_HS="taskset -c 0"; ON_LAPTOP="taskset -c 1"; fi
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
[handoff]
global_subnet = "10.201.0.0/24"
identity = "$OUT/identity.key"
[[link]]
name = "wifi"
kind = "wifi"
interface = "lan0"
address = "10.89.1.1/24"
pools = ["10.89.1.100-10.89.1.199"]
CFG
$ON_HS ip netns exec $S "$HS_BIN" --config "$OUT/homespotd.toml" --log warn > "$OUT/homespotd.log" 2>&1 & PIDS+=($!)
sleep 0.5

cat > "$OUT/agent.toml" <<CFG
[agent]
api_socket = "$OUT/agent.sock"
state_dir = "$OUT/agent-state"
interfaces = ["eth0"]
[policy]
throughput_rule = false
CFG
$ON_LAPTOP ip netns exec $C env HOMESPOT_LOG=warn "$AGENT" --config "$OUT/agent.toml" run > "$OUT/agent.log" 2>&1 & AG=$!; PIDS+=($AG)
for _ in $(seq 100); do
    if "$AGENT" --api "$OUT/agent.sock" status --json 2>/dev/null | grep -q '"hibernating": false'; then break; fi
    sleep 0.1
done
"$AGENT" --api "$OUT/agent.sock" status --json > "$OUT/status.json"
grep -q '"hibernating": false' "$OUT/status.json" || { echo "agent found no HomeSpot"; cat "$OUT/agent.log"; exit 1; }
AGPID=$(ip netns pids $C | while read -r p; do [[ "$(readlink /proc/$p/exe)" == "$AGENT" ]] && echo "$p"; done | head -1)
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
sleep 1
IDLE0=$(rss "$AGPID")

HSPID=$(ip netns pids $S | while read -r p; do [[ "$(readlink /proc/$p/exe)" == "$HS_BIN" ]] && echo "$p"; done | head -1)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() { # name connect: one load run, with the CPU time agent and homespotd spent per request
    local a0 h0 a1 h1 n
    a0=$(ticks "$AGPID"); h0=$(ticks "$HSPID")
    $ON_LAPTOP ip netns exec $C "$LG" --mode proxy --connect "$2" --origin 10.89.0.2:8080 --path /1k \
        --connections 64 --duration "$DUR" | tee -a "$OUT/$1.txt"
    a1=$(ticks "$AGPID"); h1=$(ticks "$HSPID")
    n=$(grep -o "requests=[0-9]*" "$OUT/$1.txt" | tail -1 | cut -d= -f2)
    [[ -n "$n" && "$n" -gt 0 ]] && awk -v a=$((a1-a0)) -v h=$((h1-h0)) -v n="$n" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "  cpu per request: agent %.1f us, homespotd %.1f us\n", 1e6*a/hz/n, 1e6*h/hz/n }' | tee -a "$OUT/$1.cpu"
}
for i in 1 2 3; do
    run direct 10.89.1.1:3128
    run agent 127.0.0.1:3129
done
sleep 2
IDLE1=$(rss "$AGPID")
median() { sort -n | sed -n 2p; }
field() { grep -o "$2=[0-9.]*" "$OUT/$1.txt" | cut -d= -f2 | median; }
D_RPS=$(field direct rps); A_RPS=$(field agent rps)
D_P99=$(field direct p99_ms); A_P99=$(field agent p99_ms)
echo
echo "== agent benchmark ($DUR s x 3, 64 connections, 1 KiB, CPUs ${CPUS:-split}) =="
printf "client -> HomeSpot proxy:          %8.0f req/s  p99 %6.2f ms\n" "$D_RPS" "$D_P99"
printf "client -> agent -> HomeSpot proxy: %8.0f req/s  p99 %6.2f ms\n" "$A_RPS" "$A_P99"
awk -v a="$A_RPS" -v d="$D_RPS" -v ap="$A_P99" -v dp="$D_P99" \
    'BEGIN { printf "throughput kept %.0f %% (target >= 80 %%), p99 added %+.0f %% (target <= +20 %%)\n", 100*a/d, 100*(ap-dp)/dp }'
echo "agent RSS idle: $((IDLE0/1024)).$(( (IDLE0%1024)*10/1024 )) MB after start, $((IDLE1/1024)).$(( (IDLE1%1024)*10/1024 )) MB after the load (target <= 15 MB)"
# For bench/check.
awk -v a="$A_RPS" -v d="$D_RPS" -v ap="$A_P99" -v dp="$D_P99" \
    'BEGIN { printf "FIGURE agent_throughput_kept %.3f\nFIGURE agent_p99_added %.3f\n", a/d, (ap-dp)/dp }'
echo "raw output in $OUT"
