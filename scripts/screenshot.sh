#!/usr/bin/env bash
# Make the README's screenshots from the real binary: start a few labelled containers on the local
# engine and a scaling rule for one of them, run the console in tmux at 120x32, capture the
# workloads screen and the autoscaler view as text, and clean up.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/pilothouse}
image=pilothouse-bench/busybox:1
label=pilothouse.bench=1
python3 -c 'import sys; sys.path.insert(0, "scripts"); import bench_console; bench_console.ensure_image()'
# A tmux server of its own, so no other session's sizes or options apply.
tm() { tmux -L pilothouse-shot -f /dev/null "$@"; }
cleanup() {
  tm kill-server 2>/dev/null || true
  ids=$(docker ps -aq --filter "label=$label")
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
}
trap cleanup EXIT
run() { # name, extra args..., then the command
  local name=$1; shift
  docker run -d --name "$name" --label "$label" "$@" >/dev/null
}
talk='i=0; while :; do i=$((i+1)); echo "GET /cart/$i 200 3ms"; usleep 400000; done'
for n in 1 2 3; do
  run "shop-web-$n" --label com.docker.compose.project=shop --label com.docker.compose.service=web \
    --label com.docker.compose.container-number=$n -e DB_PASSWORD=hunter2 -e LOG_LEVEL=info \
    "$image" sh -c "$talk"
done
run shop-worker-1 --label com.docker.compose.project=shop --label com.docker.compose.service=worker \
  --label com.docker.compose.container-number=1 "$image" sh -c 'while :; do sleep 1; done'
run batch-1 --label pilothouse.group=batch --label pilothouse.group.number=1 --cap-add SYS_ADMIN \
  "$image" sh -c 'while :; do sleep 1; done'
run scratchpad "$image" sh -c 'sleep 2; exit 3'
export PILOTHOUSE_CONFIG_DIR PILOTHOUSE_DATA_DIR PILOTHOUSE_STATE_DIR
tmp=$(mktemp -d)
PILOTHOUSE_CONFIG_DIR=$tmp/config PILOTHOUSE_DATA_DIR=$tmp/data PILOTHOUSE_STATE_DIR=$tmp/state
mkdir -p "$tmp/config/rules"
cat > "$tmp/config/rules/web.yaml" <<'RULE'
name: web
target: { platform: docker, host: local, workload: shop/web }
minReplicas: 2
maxReplicas: 6
pollingInterval: 2s
metrics:
  - name: cpu
    cpu: { utilization: 70 }
RULE
tm new-session -d -x 120 -y 32 "$binary"
sleep 8
# Only this script's workloads, then the web service selected.
tm send-keys "/" "shop|batch|scratchpad" Enter
sleep 1
tm send-keys j j
sleep 3
tm capture-pane -p > "${2:-assets/screenshot.txt}"
tm send-keys a
sleep 2
tm capture-pane -p > "${3:-assets/screenshot-autoscaler.txt}"
tm send-keys q q
rm -rf "$tmp"
