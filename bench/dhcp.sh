#!/usr/bin/env bash
# DHCP benchmark, one run on one machine: perfdhcp full DORA exchanges/s and latency for
# homespotd (every ACK durable in redb) vs dnsmasq (lease file fsynced on every change) vs
# Kea (memfile, appended, not fsynced per lease). Each server runs in a namespace of its own
# test bed; the rate steps up until drops pass 5 %. Needs root.
#   bench/dhcp.sh            full run (~4 minutes)
#   SECONDS_PER_RATE=5 bench/dhcp.sh   shorter
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup --bench
cargo build --release -q -p homespot
BIN=$PWD/target/release/homespotd
DUR=${SECONDS_PER_RATE:-10}
OUT=$PWD/bench/out/dhcp-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
# perfdhcp's sockets get 4 MiB receive buffers (bench/rcvbuf.c says why); every step also
# records where datagrams were dropped: the server's socket or perfdhcp's.
gcc -shared -fPIC -O2 -o "$OUT/rcvbuf.so" bench/rcvbuf.c -ldl
PERFDHCP_ENV=(LD_PRELOAD="$OUT/rcvbuf.so" RCVBUF_BYTES=$((4 << 20)))
if [[ -n "${PERFDHCP_STOCK_BUFFER:-}" ]]; then PERFDHCP_ENV=(); fi
S=hsbench$$s
C=hsbench$$c
SERVER_PID=""

cleanup() {
    [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null || true
    for ns in $S $C; do
        for p in $(ip netns pids $ns 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del $ns 2>/dev/null || true
    done
}
trap cleanup EXIT

ip netns add $S
ip netns add $C
ip -n $S link add lan0 type veth peer name eth0 netns $C
ip -n $S addr add 10.88.0.1/16 dev lan0
ip -n $C addr add 10.88.0.2/16 dev eth0
for ns in $S $C; do ip -n $ns link set lo up; done
ip -n $S link set lan0 up
ip -n $C link set eth0 up

start_homespotd() {
    rm -f "$OUT/homespot.redb"
    cat > "$OUT/homespotd.toml" <<CFG
[server]
lease_db = "$OUT/homespot.redb"
status_socket = "$OUT/status.sock"
# perfdhcp is thousands of new clients a second; the default limit is for a home.
rate_per_link = 100000
# perfdhcp speaks as a relay agent (giaddr = its address).
relays = ["10.88.0.2"]
[[link]]
name = "bench"
interface = "lan0"
address = "10.88.0.1/16"
pools = ["10.88.1.0-10.88.255.254"]
lease_time = "1h"
wpad_url = "http://10.88.0.1/wpad.dat"
CFG
    ip netns exec $S "$BIN" --config "$OUT/homespotd.toml" > "$OUT/homespotd.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 50); do grep -q "lease database loaded" "$OUT/homespotd.log" && return; sleep 0.1; done
}

start_dnsmasq() {
    rm -f "$OUT/dnsmasq.leases"
    ip netns exec $S dnsmasq -k --conf-file=/dev/null --port=0 --interface=lan0 --bind-interfaces \
        --dhcp-range=10.88.1.0,10.88.255.254,1h --dhcp-option=252,"http://10.88.0.1/wpad.dat" \
        --no-ping --dhcp-lease-max=100000 --dhcp-leasefile="$OUT/dnsmasq.leases" \
        --log-facility="$OUT/dnsmasq.log" --pid-file="$OUT/dnsmasq.pid" --user=root > "$OUT/dnsmasq.out" 2>&1 &
    SERVER_PID=$!
    sleep 1
}

start_kea() {
    rm -f "$OUT/kea-leases4.csv"*
    cat > "$OUT/kea.conf" <<CFG
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "lan0" ] },
    "lease-database": { "type": "memfile", "persist": true, "name": "$OUT/kea-leases4.csv", "lfc-interval": 0 },
    "valid-lifetime": 3600,
    "option-def": [ { "name": "wpad", "code": 252, "type": "string" } ],
    "subnet4": [ { "id": 1, "subnet": "10.88.0.0/16",
        "pools": [ { "pool": "10.88.1.0 - 10.88.255.254" } ],
        "option-data": [ { "name": "wpad", "data": "http://10.88.0.1/wpad.dat" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$OUT/kea.log" } ], "severity": "INFO" } ]
} }
CFG
    KEA_PIDFILE_DIR=$OUT KEA_LOCKFILE_DIR=$OUT ip netns exec $S kea-dhcp4 -c "$OUT/kea.conf" > "$OUT/kea.out" 2>&1 &
    SERVER_PID=$!
    sleep 2
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    sleep 0.5
}

# The UDP receive-buffer drops in namespace $1 so far (absolute: nstat's history file is per
# user, not per namespace).
rcvbuf_drops() { ip netns exec "$1" nstat -asz UdpRcvbufErrors 2>/dev/null | awk '/^UdpRcvbufErrors/ { n=$2 } END { print n+0 }'; }

# perfdhcp at RATE; prints "rate do_drop% ra_drop% do_ms ra_ms server_drops perfdhcp_drops"
perf() {
    local rate=$1 log="$OUT/perfdhcp-$2-$1.txt"
    local s0 c0
    s0=$(rcvbuf_drops $S); c0=$(rcvbuf_drops $C)
    ip netns exec $C env "${PERFDHCP_ENV[@]}" timeout $((DUR + 20)) perfdhcp -4 -r "$rate" -R 50000 -p "$DUR" -l eth0 > "$log" 2>&1 || true
    local sd cd
    sd=$(($(rcvbuf_drops $S) - s0)); cd=$(($(rcvbuf_drops $C) - c0))
    awk -v sd="$sd" -v cd="$cd" '
        /^Rate:/ { rate=$2 }
        /drops ratio:/ { d[++nd]=$3 }
        /^avg delay: [0-9.]+ ms/ { a[++na]=$3 }
        END { printf "%s %s %s %s %s %s %s\n", rate, d[1], d[2], a[1], a[2], sd, cd }' "$log"
}

declare -A BEST BESTN FAILED
summary="$OUT/summary.md"
printf '| server | asked/s | got DORA/s | drops DO %% | drops RA %% | OFFER ms | ACK ms | server RSS | dropped at the server / perfdhcp socket |\n|---|---|---|---|---|---|---|---|---|\n' > "$summary"

run_server() {
    local name=$1; shift
    for rate in "$@"; do
        "start_$name"
        local pid=$SERVER_PID
        # kea/dnsmasq are started through ip netns exec, which execs: $pid is the server.
        read -r got dd rd da ra sd cd < <(perf "$rate" "$name")
        local rss
        rss=$(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$pid/status 2>/dev/null || echo "?")
        stop_server
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n' "$name" "$rate" "$got" "$dd" "$rd" "$da" "$ra" "$rss" "$sd" "$cd" | tee -a "$summary"
        local ok
        ok=$(awk -v a="$dd" -v b="$rd" 'BEGIN { print (a+0 < 1 && b+0 < 1) ? 1 : 0 }')
        # The best rate is the last one before the first that dropped 1 % or more (a lucky
        # higher step after a failed one does not count).
        if [[ "$ok" == 1 && -z "${FAILED[$name]:-}" ]]; then BEST[$name]="$got DORA/s (asked $rate), ACK ${ra} ms, RSS $rss"; BESTN[$name]=$got; fi
        if [[ "$ok" != 1 ]]; then FAILED[$name]=1; fi
        local bad
        bad=$(awk -v a="$dd" -v b="$rd" 'BEGIN { print (a+0 > 5 || b+0 > 5) ? 1 : 0 }')
        # (An `&&` here ended the script under set -e when the last rate was not bad.)
        if [[ "$bad" == 1 ]]; then break; fi
    done
}

echo "perfdhcp, ${DUR} s per rate, 50,000 simulated clients; results in $OUT"
run_server homespotd 2000 4000 6000 8000 10000 12000 14000 16000 20000
run_server kea 2000 4000 5000 6000 7000 8000 10000
run_server dnsmasq 100 200 300 400 500 600 800

size=$(stat -c %s "$BIN")
{
    echo
    echo "Best rate under 1 % drops:"
    for n in homespotd kea dnsmasq; do echo "- $n: ${BEST[$n]:-none}"; done
    echo "- homespotd stripped release binary: $((size / 1024)) KiB"
} | tee -a "$summary"
# For bench/check.
awk -v a="${BESTN[homespotd]:-0}" -v b="${BESTN[kea]:-0}" 'BEGIN { if (b > 0) printf "FIGURE dhcp_vs_kea %.2f\n", a/b }'
