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

# The origin: nginx in $N, one worker, a 1 KiB file at /1k over HTTP on 10.89.0.2:8080, and
# over HTTPS on 8443 with "tls". Runs under ${ON_HS} when the script sets it (a CPU pin).
start_origin() {
    mkdir -p "$OUT/www"
    head -c 1024 /dev/urandom > "$OUT/www/1k"
    local tls=""
    if [[ "${1:-}" == tls ]]; then
        openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=origin -days 1 \
            -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
        tls="server { listen 10.89.0.2:8443 ssl; ssl_certificate $OUT/cert.pem; ssl_certificate_key $OUT/key.pem; root $OUT/www; }"
    fi
    cat > "$OUT/nginx.conf" <<CFG
worker_processes 1;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 10.89.0.2:8080; root $OUT/www; }
    $tls
}
CFG
    ${ON_HS:-} ip netns exec $N nginx -c "$OUT/nginx.conf" -g 'daemon off;' & PIDS+=($!)
}
