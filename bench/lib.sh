# Shared by the benchmark scripts: three namespaces ($S HomeSpot, $C client, $N origin) joined
# by veth pairs (10.89.1.0/24 HomeSpot-client, 10.89.0.0/24 HomeSpot-origin), removed on exit
# with every process still in them. Source it after setting PREFIX (unique per script).
S=${PREFIX}$$s; C=${PREFIX}$$c; N=${PREFIX}$$n
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    for ns in $S $C $N; do
        for p in $(ip netns pids $ns 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del $ns 2>/dev/null || true
    done
}
trap cleanup EXIT

for ns in $S $C $N; do ip netns add $ns; ip -n $ns link set lo up; done
ip -n $S link add lan0 type veth peer name eth0 netns $C
ip -n $S link add wan type veth peer name wan netns $N
ip -n $S addr add 10.89.1.1/24 dev lan0; ip -n $S link set lan0 up
ip -n $S addr add 10.89.0.1/24 dev wan; ip -n $S link set wan up
ip -n $C addr add 10.89.1.2/24 dev eth0; ip -n $C link set eth0 up
ip -n $N addr add 10.89.0.2/24 dev wan; ip -n $N link set wan up
