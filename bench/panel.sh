#!/usr/bin/env bash
# The admin panel's footprint (issue 14, acceptance 3), on the static release build the
# router ships: stripped size before the panel (BASE, default the last commit without it)
# and now (target: at most +700 KB), the embedded assets gzip'd (target: at most 60 KB),
# homespotd's RSS and CPU idle and with the panel live in 5 headless browsers (targets: at most
# +1 MB, at most 1 % of a core), and the overview's first paint in the browser (target: at most
# 200 ms). Exits non-zero when a target is missed. Needs root; ~6 minutes.
#   bench/panel.sh
#   BASE=<rev> bench/panel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
BASE=${BASE:-99b1c70}
OUT=$PWD/bench/out/panel-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
fail=0
check() { # name value limit unit
    local verdict=met
    if awk -v v="$2" -v l="$3" 'BEGIN { exit !(v == "" || v > l) }'; then verdict=MISSED; fail=1; fi
    printf '%-44s %10s %-4s (target <= %s %s) %s\n' "$1" "$2" "$4" "$3" "$4" "$verdict" | tee -a "$OUT/summary.txt"
}

static_build() { # dir name -> prints the stripped size in bytes (target dirs kept for reuse)
    local t="$PWD/target/bench-panel-$2"
    (cd "$1" && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -q -p homespot --no-default-features \
        --target x86_64-unknown-linux-gnu --target-dir "$t")
    local bin="$t/x86_64-unknown-linux-gnu/release/homespotd"
    strip -o "$OUT/homespotd-$2" "$bin"
    stat -c %s "$OUT/homespotd-$2"
}

WT=$OUT/base
git worktree add -q --detach "$WT" "$BASE"
trap 'git worktree remove --force "$WT" 2>/dev/null || true' EXIT
before=$(static_build "$WT" base)
after=$(static_build "$PWD" now)
STATIC="$OUT/homespotd-now"
echo "static homespotd stripped: $before bytes at $BASE, $after bytes now" | tee -a "$OUT/summary.txt"
check "static homespotd growth (KB)" $(( (after - before) / 1000 )) 700 KB

gz=0
for f in web-admin/assets/*; do
    n=$(gzip -9c "$f" | wc -c); gz=$((gz + n))
    echo "  $f: $(stat -c %s "$f") bytes, $n gzip'd" | tee -a "$OUT/summary.txt"
done
check "assets gzip'd total (KB)" $(( (gz + 999) / 1000 )) 60 KB

export HOMESPOT_HOMESPOTD_BIN=$STATIC
cargo test -q -p homespot-agent --test panel -- --ignored --nocapture panel_footprint 2>&1 | tee "$OUT/footprint.log"
line=$(grep "with the panel live" "$OUT/footprint.log")
rss_growth=$(sed -E 's/.*\(\+(-?[0-9]+) KiB\).*/\1/' <<<"$line")
cpu=$(sed -E 's/.*RSS [0-9]+ KiB \(.*\), CPU ([0-9.]+) %.*/\1/' <<<"$line")
check "RSS growth, panel live in 5 browsers (KiB)" "$rss_growth" 1024 KiB
check "CPU, panel live in 5 browsers (% of a core)" "$cpu" 1 %
cargo test -q -p homespot-agent --test panel -- --nocapture the_admin_panel 2>&1 | tee "$OUT/e2e.log"
fcp=$(grep -oE 'first contentful paint [0-9]+' "$OUT/e2e.log" | grep -oE '[0-9]+$')
check "overview first contentful paint (ms)" "$fcp" 200 ms
echo "summary: $OUT/summary.txt"
exit $fail
