#!/usr/bin/env bash
# The tiny client's targets (issue 17), checked: exits non-zero when one is missed.
#   1. The embedded build's flash <= 128 KiB and static RAM <= 48 KiB (tiny/embedded/size).
#   2. A silent loss of the device's preferred radio during 50 datagrams/s of telemetry: the
#      gap at the service <= 150 ms, no loss after it, in each of RUNS runs (default 5) of
#      tiny/tests/device.rs with HOMESPOT_TINY_MAX_GAP_MS=150.
# Needs root. Not run by CI for 2. (shared, noisy machines; the test there holds 400 ms): run by
# hand before touching the device loop, the switchboard or the client core.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
RUNS=${RUNS:-5}
fail=0
echo "== the embedded build"
size=$(tiny/embedded/size) || fail=1
echo "$size"
# For bench/check.
echo "$size" | awk '/^(flash|RAM):/ { for (i = 1; i <= NF; i++) if ($i == "bytes") { printf "FIGURE tiny_%s_kib %.1f\n", ($1 == "flash:" ? "flash" : "ram"), $(i-1) / 1024; next } }'
cargo build -q -p homespot
for i in $(seq 1 "$RUNS"); do
    echo "== silent loss, run $i"
    out=$(HOMESPOT_TINY_MAX_GAP_MS=${HOMESPOT_TINY_MAX_GAP_MS:-150} \
        cargo test -q -p phandoff-embassy --test device -- --nocapture 2>&1)
    st=$?
    echo "$out" | grep -E "joined|telemetry gap|largest telemetry pause|back home|refused|panicked" || true
    echo "$out" | sed -n 's/.*telemetry gap \([0-9.]*\) ms.*/FIGURE tiny_gap_ms \1/p'
    if [[ $st -ne 0 ]]; then echo "MISSED: silent loss, run $i"; fail=1; fi
done
exit $fail
