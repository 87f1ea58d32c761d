#!/usr/bin/env bash
# Container networking: TCP throughput and connection rate, berth native
# (bridge + veth + nftables, published ports through the shim's userland
# proxy) against docker (dockerd 20.10: bridge + veth + iptables,
# docker-proxy), side by side in one run, on berth's default busybox image.
#
#   benches/net.sh                               # 1 GiB, 5000 requests, ROUNDS=5
#   SIZE_MIB=256 REQUESTS=2000 ROUNDS=1 benches/net.sh
#
# Rows (each engine runs the same container: busybox httpd serving a
# directory bind-mounted read-only from this host, published as -p 8080:80):
#   host → published port: download   curl -o /dev/null of a SIZE_MIB file
#                                      from http://127.0.0.1:8080/ (the proxy
#                                      path: docker's nat OUTPUT rule skips
#                                      127.0.0.0/8, so loopback reaches
#                                      docker-proxy, as in a stock install)
#   host → published port: conn/s      ab -n REQUESTS -c CONCURRENCY on
#                                      http://127.0.0.1:8080/ (a 1 KiB index.html,
#                                      a new connection per request)
#   container → host: download         `wget -q -O /dev/null` in the container
#                                      of the same file from busybox httpd on
#                                      this host, bound to the bridge's gateway
#                                      address (timed inside the container with
#                                      busybox sh's $EPOCHREALTIME, so `exec` is
#                                      not counted)
#   container → host: wget/s           CONCURRENCY shell loops of `wget` in the
#                                      container, WGET_REQUESTS in all: busybox
#                                      has no load generator, so every request
#                                      is a new wget process (busybox sh forks
#                                      and re-execs busybox for it): the row is
#                                      mostly process creation in the
#                                      container, the network path is a part
#   proxy CPU rows: utime + stime of the process listening on the published
#   port (berth: the container's shim; docker: the IPv4 docker-proxy) over
#   the two published-port rows, per GiB and per connection
#   reference rows (no proxy): the download and ab straight to the
#   container's address, port 80, from the same network namespace: what the
#   veth/bridge path gives without the userland proxy.
# Throughput in MiB/s, rates per second (medians over ROUNDS; each row runs
# berth and docker back to back, the order alternating by round). The ratio
# is berth / docker: below 1, berth is slower.
#
# Isolation: each engine runs in a network namespace of its own made here
# (`ip netns add`, loopback up), entered with `nsenter --net=/run/netns/NS`
# for the engine and for every client: dockerd (--iptables=true
# --userland-proxy=true, private data/exec root, pidfile and socket) puts its
# docker0, iptables rules and docker-proxy there; the berth CLI starts its
# native agent (private BERTH_HOME) there, so berth's bridge, nftables table
# and proxy are there too. The host's own network configuration is not
# touched. (`ip netns exec` is not used: it also remounts /sys for the new
# namespace, which hides /sys/fs/cgroup, and then neither engine can create
# a container's cgroup.) The host-side servers (busybox httpd) run in those
# namespaces as well, one per namespace.
#
# The berth binaries (target/release/berth and the static berth-agent) are
# copied into the work directory first, so a rebuild during the run does not
# swap them. Missing tools are installed with apt-get.
#
# Environment: SIZE_MIB (1024), REQUESTS (5000, ab), WGET_REQUESTS (1000),
# CONCURRENCY (8), ROUNDS (5), KEEP=1 keeps the work directory.
# VM=1 adds the VM rows after these (benches/net-vm.sh: throughput and
# connection rate of berth's machine VM and of an own VM, with their
# user-mode network stack and port forwarding, against QEMU microvm with
# passt and with slirp, same guest kernel; VM_SIZE_MIB, VM_CONNS, VM_ROUNDS,
# VM_PEERS, see that script), VM=only runs just those.
# Processes: containers are removed, dockerd is stopped by its pidfile PID,
# the berth agent by its agent.pid, the host-side servers by the PIDs started
# here; then the namespaces and the work directory are removed. Nothing is
# killed by name.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# VM rows (benches/net-vm.sh): VM=only runs just them, VM=1 after the rows above.
case ${VM:-0} in
only) exec "$root/benches/net-vm.sh" ;;
0 | 1) ;;
*) printf 'bench: FAIL: VM must be 0, 1 or only\n' >&2; exit 1 ;;
esac
size_mib=${SIZE_MIB:-1024}
requests=${REQUESTS:-5000}
wget_requests=${WGET_REQUESTS:-1000}
conc=${CONCURRENCY:-8}
rounds=${ROUNDS:-5}
pub_port=8080    # published host port, in each engine's namespace
srv_port=8000    # the host-side server, on the bridge gateway address
log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer"; }
posint SIZE_MIB "$size_mib"; posint REQUESTS "$requests"; posint WGET_REQUESTS "$wget_requests"
posint CONCURRENCY "$conc"; posint ROUNDS "$rounds"
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, dockerd)"
PATH=$PATH:/usr/sbin:/sbin

# ------------------------------------------------------------------ tools
missing=()
command -v ab >/dev/null || missing+=(apache2-utils)
command -v curl >/dev/null || missing+=(curl)
command -v dockerd >/dev/null || missing+=(docker.io)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v ip >/dev/null || missing+=(iproute2)
command -v nsenter >/dev/null || missing+=(util-linux)
command -v nft >/dev/null || missing+=(nftables)
command -v iptables >/dev/null || missing+=(iptables)
[ -x /bin/busybox ] || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        die "could not install ${missing[*]}"
fi
docker_bin=/usr/bin/docker
[ -x "$docker_bin" ] || docker_bin=$(command -v docker) || die "no docker CLI (apt-get install docker.io)"
busybox=/bin/busybox

berth_src=$root/target/release/berth
agent_src=$root/target/x86_64-unknown-linux-gnu/release/berth-agent
if [ ! -x "$berth_src" ] || [ ! -x "$agent_src" ]; then
    log "building berth (PROFILE=release scripts/dev-build.sh)"
    (cd "$root" && PROFILE=release scripts/dev-build.sh) >&2
fi
image_tar=$root/out/images/busybox.oci.tar
[ -f "$image_tar" ] || "$root/images/build-default-image.sh" >&2
image=berth/busybox:latest

# ------------------------------------------------------------------ setup
work=$(mktemp -d /tmp/berth-bench-net.XXXXXX)
ns_b=berth-bench-net-b.$$
ns_d=berth-bench-net-d.$$
ns_made=() srv_pids=() berth_up="" docker_up=""
cleanup() {
    set +e
    local p n
    [ -n "$berth_up" ] && berth_cli rm -f bench-web >/dev/null 2>&1
    [ -n "$docker_up" ] && docker_cli rm -f bench-web >/dev/null 2>&1
    for p in "${srv_pids[@]}"; do kill "$p" 2>/dev/null; done
    if [ -f "$work/berth/native/agent.pid" ]; then
        p=$(cat "$work/berth/native/agent.pid")
        kill "$p" 2>/dev/null && for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    fi
    if [ -f "$work/docker.pid" ]; then
        p=$(cat "$work/docker.pid")
        if kill "$p" 2>/dev/null; then
            for _ in $(seq 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$p" 2>/dev/null && { log "dockerd $p still running: SIGKILL"; kill -KILL "$p"; }
        fi
    fi
    sleep 0.5
    grep -F " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
    for n in "${ns_made[@]}"; do ip netns del "$n"; done
    if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for n in "$ns_b" "$ns_d"; do
    ip netns add "$n"
    ns_made+=("$n")
    ip -n "$n" link set lo up
done
in_b() { nsenter --net="/run/netns/$ns_b" -- "$@"; }
in_d() { nsenter --net="/run/netns/$ns_d" -- "$@"; }

mkdir -p "$work/bin" "$work/www" "$work/res"
cp "$berth_src" "$agent_src" "$work/bin/"
export BERTH_HOME=$work/berth BERTH_AGENT=$work/bin/berth-agent BERTH_ISOLATION=native
berth_cli() { in_b "$work/bin/berth" "$@"; }
docker_cli() { "$docker_bin" -H "unix://$work/docker.sock" "$@"; }

# The served files: 1 KiB index.html (ab, wget loop) and the big file, in
# the page cache before any timing.
head -c 1024 /dev/zero | tr '\0' x >"$work/www/index.html"
dd if=/dev/zero of="$work/www/big" bs=1M count="$size_mib" status=none
cat "$work/www/big" >/dev/null
size_bytes=$((size_mib * 1048576))

log "dockerd in netns $ns_d"
nsenter --net="/run/netns/$ns_d" -- dockerd --iptables=true --userland-proxy=true --exec-opt native.cgroupdriver=cgroupfs \
    --storage-driver=overlay2 --data-root="$work/docker" --exec-root="$work/docker-exec" \
    --pidfile="$work/docker.pid" --host="unix://$work/docker.sock" >"$work/dockerd.log" 2>&1 &
for _ in $(seq 600); do docker_cli version >/dev/null 2>&1 && break; sleep 0.2; done
docker_cli version >/dev/null 2>&1 || { tail -n 5 "$work/dockerd.log" >&2; die "dockerd did not come up"; }
docker_up=1
skopeo copy -q "oci-archive:$image_tar" "docker-archive:$work/img.tar:$image"
docker_cli load -i "$work/img.tar" >/dev/null
rm -f "$work/img.tar"

log "berth native agent in netns $ns_b"
berth_up=1
berth_cli load -i "$image_tar" >/dev/null

web_args=(-d --name bench-web -p "$pub_port:80" -v "$work/www:/www:ro" "$image" httpd -f -p 80 -h /www)
berth_cli run "${web_args[@]}" >/dev/null
docker_cli run "${web_args[@]}" >/dev/null

# Per engine: its namespace, the container's address and its gateway.
declare -A cip gw
for e in berth docker; do
    cip[$e]=$("${e}_cli" inspect -f '{{.NetworkSettings.IPAddress}}' bench-web)
    gw[$e]=$("${e}_cli" exec bench-web sh -c "ip route | awk '/^default/ {print \$3}'")
    [[ ${cip[$e]} =~ ^[0-9.]+$ && ${gw[$e]} =~ ^[0-9.]+$ ]] ||
        die "$e: container address '${cip[$e]}' / gateway '${gw[$e]}'"
    log "$e: container ${cip[$e]}, gateway ${gw[$e]}"
done
# nsenter execs the server (no fork for --net alone): $! is the server's PID.
nsenter --net="/run/netns/$ns_b" -- "$busybox" httpd -f -p "${gw[berth]}:$srv_port" -h "$work/www" &
srv_pids+=($!)
nsenter --net="/run/netns/$ns_d" -- "$busybox" httpd -f -p "${gw[docker]}:$srv_port" -h "$work/www" &
srv_pids+=($!)
in_e() { if [ "$1" = berth ]; then shift; in_b "$@"; else shift; in_d "$@"; fi; }

# The proxy process behind the published port in each namespace (the
# IPv4 listener: berth's shim, docker's docker-proxy for 0.0.0.0), for its
# CPU time over the published-port rows.
declare -A proxy_pid
for e in berth docker; do
    proxy_pid[$e]=$(in_e "$e" ss -Hltnp4 "sport = :$pub_port" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
    [ -n "${proxy_pid[$e]}" ] || die "$e: nothing listens on :$pub_port"
    log "$e: :$pub_port is served by pid ${proxy_pid[$e]} ($(tr '\0' ' ' </proc/"${proxy_pid[$e]}"/cmdline | cut -c1-60))"
done
clk_tck=$(getconf CLK_TCK)
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; } # utime + stime

# ------------------------------------------------------------------ rows
# Each appends one value to $work/res/<row>.<engine>.
download() { # engine url row
    local out
    out=$(in_e "$1" curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$2") ||
        die "$1: curl $2 failed"
    set -- "$1" "$2" "$3" $out
    [ "$4" = 200 ] && [ "$5" = "$size_bytes" ] || die "$1: curl $2: status $4, $5 bytes"
    awk -v b="$5" -v t="$6" 'BEGIN { printf "%.1f\n", b / 1048576 / t }' >>"$work/res/$3.$1"
}
bench_ab() { # engine url row
    local out
    out=$(in_e "$1" ab -q -n "$requests" -c "$conc" "$2" 2>&1) || { printf '%s\n' "$out" >&2; die "$1: ab $2 failed"; }
    local failed rps
    failed=$(awk '/^Failed requests:/ {print $3}' <<<"$out")
    rps=$(awk '/^Requests per second:/ {print $4}' <<<"$out")
    [ -n "$rps" ] || { printf '%s\n' "$out" >&2; die "$1: no rate from ab"; }
    [ "$failed" = 0 ] || log "WARNING: $1: ab $2: $failed failed requests"
    echo "$rps" >>"$work/res/$3.$1"
}
c2h_download() { # engine row
    local t
    t=$("$1_cli" exec bench-web sh -c \
        't0=$EPOCHREALTIME; wget -q -O /dev/null "$1" || exit 1; t1=$EPOCHREALTIME; echo "$t0 $t1"' \
        sh "http://${gw[$1]}:$srv_port/big") || die "$1: wget in the container failed"
    awk -v s="$size_mib" -v t="$t" 'BEGIN { split(t, a, " "); printf "%.1f\n", s / (a[2] - a[1]) }' >>"$work/res/$2.$1"
}
c2h_wget_loop() { # engine row
    local per=$(((wget_requests + conc - 1) / conc)) out
    out=$("$1_cli" exec bench-web sh -c '
        url=$1 per=$2 c=$3
        t0=$EPOCHREALTIME
        j=0
        while [ $j -lt $c ]; do
            ( i=0; while [ $i -lt $per ]; do wget -q -O /dev/null "$url" || echo FAIL; i=$((i + 1)); done ) &
            j=$((j + 1))
        done
        wait
        t1=$EPOCHREALTIME
        echo "T $t0 $t1"' sh "http://${gw[$1]}:$srv_port/index.html" "$per" "$conc") ||
        die "$1: wget loop in the container failed"
    local fails
    fails=$(grep -c FAIL <<<"$out" || true)
    [ "$fails" = 0 ] || log "WARNING: $1: $fails failed wget requests"
    awk -v n=$((per * conc)) '/^T / { printf "%.1f\n", n / ($3 - $2) }' <<<"$out" >>"$work/res/$2.$1"
}
run_row() { # row engine
    local e=$2 a b
    case $1 in
    h2c_bw)
        a=$(cpu_ticks "${proxy_pid[$e]}")
        download "$e" "http://127.0.0.1:$pub_port/big" h2c_bw
        b=$(cpu_ticks "${proxy_pid[$e]}")
        # proxy CPU seconds per GiB moved
        awk -v d=$((b - a)) -v h="$clk_tck" -v s="$size_mib" 'BEGIN { printf "%.3f\n", d / h / (s / 1024) }' >>"$work/res/h2c_bw_cpu.$e"
        ;;
    h2c_rate)
        a=$(cpu_ticks "${proxy_pid[$e]}")
        bench_ab "$e" "http://127.0.0.1:$pub_port/" h2c_rate
        b=$(cpu_ticks "${proxy_pid[$e]}")
        # proxy CPU microseconds per connection
        awk -v d=$((b - a)) -v h="$clk_tck" -v n="$requests" 'BEGIN { printf "%.1f\n", d / h * 1e6 / n }' >>"$work/res/h2c_rate_cpu.$e"
        ;;
    c2h_bw) c2h_download "$e" c2h_bw ;;
    c2h_rate) c2h_wget_loop "$e" c2h_rate ;;
    direct_bw) download "$e" "http://${cip[$e]}:80/big" direct_bw ;;
    direct_rate) bench_ab "$e" "http://${cip[$e]}:80/" direct_rate ;;
    esac
}

log "warm-up"
for e in berth docker; do
    in_e "$e" curl -sS -o /dev/null "http://127.0.0.1:$pub_port/" || die "$e: published port does not answer"
    "${e}_cli" exec bench-web wget -q -O /dev/null "http://${gw[$e]}:$srv_port/index.html" ||
        die "$e: the host server does not answer the container"
    in_e "$e" ab -q -n 200 -c "$conc" "http://127.0.0.1:$pub_port/" >/dev/null 2>&1
done

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date +%s)
rows=(h2c_bw h2c_rate c2h_bw c2h_rate direct_bw direct_rate)
for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then order="berth docker"; else order="docker berth"; fi
    log "round $r/$rounds ($order first)"
    for row in "${rows[@]}"; do
        for e in $order; do run_row "$row" "$e"; done
    done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(($(date +%s) - t_start))

# ------------------------------------------------------------------ report
berth_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
cat <<EOF

host: $(uname -r), $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'); load average $load_start at the start of the rounds, $load_end at the end ($elapsed s of rounds)
berth: $("$work/bin/berth" --version) (git $berth_rev), native, bridge + nftables, proxy in the shim
docker: $(dockerd --version), CLI $("$docker_bin" --version | sed 's/^Docker version //'), --iptables=true --userland-proxy=true, overlay2
clients: $(curl --version | head -n 1 | cut -d' ' -f1-2), $(ab -V | head -n 1 | sed 's/^This is ApacheBench, Version /ab /; s/ <.*//'), $("$busybox" | head -n 1 | cut -d' ' -f1-2) (image and host server)
commands (each engine in its own netns, published -p $pub_port:80, rounds: $rounds, medians):
  host → published port: download  curl -sS -o /dev/null http://127.0.0.1:$pub_port/big            ($size_mib MiB)
  host → published port: conn/s    ab -q -n $requests -c $conc http://127.0.0.1:$pub_port/        (1 KiB index.html)
  container → host: download       exec: wget -q -O /dev/null http://<gateway>:$srv_port/big    (host: busybox httpd)
  container → host: wget/s         exec: $conc sh loops of wget -q -O /dev/null http://<gateway>:$srv_port/index.html, $(((wget_requests + conc - 1) / conc * conc)) in all
  direct (no proxy)                the same curl / ab against http://<container ip>:80/

EOF
python3 - "$work/res" "$size_mib" <<'PY'
import os, statistics, sys
res, size = sys.argv[1], sys.argv[2]
size = f"{int(size) // 1024} GiB" if int(size) % 1024 == 0 else f"{size} MiB"
rows = [
    ("h2c_bw", f"host → published port → container: download {size}", "MiB/s"),
    ("h2c_rate", "host → published port → container: ab conn/s", "req/s"),
    ("h2c_bw_cpu", "proxy process CPU per GiB (download row)", "s ↓"),
    ("h2c_rate_cpu", "proxy process CPU per connection (ab row)", "µs ↓"),
    ("c2h_bw", f"container → host (gateway): wget {size}", "MiB/s"),
    ("c2h_rate", "container → host: wget processes/s", "req/s"),
    ("direct_bw", f"reference, no proxy: host → container IP: download {size}", "MiB/s"),
    ("direct_rate", "reference, no proxy: host → container IP: ab conn/s", "req/s"),
]
def values(row, eng):
    p = os.path.join(res, f"{row}.{eng}")
    return [float(x) for x in open(p).read().split()] if os.path.exists(p) else []
def num(x):
    return f"{x:.2f}" if x < 10 else f"{x:.0f}"
def cell(v):
    if not v:
        return "n/a"
    m = num(statistics.median(v))
    return m if len(v) < 3 else f"{m} ({num(min(v))}–{num(max(v))})"
print("| row | unit | berth | docker | berth/docker |")
print("|---|---|---|---|---|")
for key, label, unit in rows:
    b, d = values(key, "berth"), values(key, "docker")
    ratio = f"{statistics.median(b) / statistics.median(d):.2f}" if b and d and statistics.median(d) else "n/a"
    print(f"| {label} | {unit} | {cell(b)} | {cell(d)} | {ratio} |")
print()
print("(median, with (min–max) when ROUNDS >= 3; higher is better except the")
print(" ↓ rows (CPU time of berth's shim / docker-proxy): there berth/docker above 1")
print(" means berth's proxy burns more CPU; elsewhere below 1 means berth is slower)")
PY
if [ "${VM:-0}" = 1 ]; then
    echo
    "$root/benches/net-vm.sh"
fi
