#!/usr/bin/env bash
# P-Handoff version 2 timing targets (issue 11), checked: exits non-zero when one is missed.
# Runs on the namespace test bed with the tests' debug builds, as BENCHMARKS.md reports them.
#   1. Query answered at most 10 ms, Query + handshake (Initiation, Response, Confirm,
#      Confirmed) at most 5 ms                    (homespot/tests/handoff.rs)
#   2. homespotd killed with SIGKILL and restarted under a download through the agent:
#      restart -> bytes flowing again at most 1 s (client-agent/tests/recovery.rs)
# Each is run RUNS times (default 3); every run must meet its target. The journey's figures
# (policy switch, silent loss) are printed by 3. for the side-by-side table in BENCHMARKS.md.
#   3. the journey (client-agent/tests/journey.rs), printed, not checked here
# Needs root. Not run by CI (shared, noisy machines): run by hand before touching these paths.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
RUNS=${RUNS:-3}
fail=0
check() { # name, then the command; prints the figures, records a miss
    local name=$1; shift
    local out st
    out=$("$@" 2>&1); st=$?
    echo "$out" | grep -E "Query answered|homespotd down|panicked" || true
    if [[ $st -ne 0 ]]; then echo "MISSED: $name"; fail=1; fi
}
for i in $(seq 1 "$RUNS"); do
    echo "== run $i"
    check "Query + handshake" env HOMESPOT_STRICT=1 cargo test -q -p homespot --test handoff homespotd_advertises -- --nocapture
    check "restart -> bytes" env HOMESPOT_STRICT=1 cargo test -q -p homespot-agent --test recovery -- --nocapture
done
if [[ "${JOURNEY:-1}" == 1 ]]; then
    echo "== the journey (printed for BENCHMARKS.md)"
    cargo test -q -p homespot-agent --test journey -- --nocapture 2>&1 | grep -E "^ *[0-9]\.|interruption|curl|panicked" || true
fi
if [[ $fail -ne 0 ]]; then
    echo "handshake.sh: a target was missed"
    exit 1
fi
echo "handshake.sh: every target met"
