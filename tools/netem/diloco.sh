#!/usr/bin/env bash
# Compute utilisation of a DiLoCo job trained by N nodes whose links are
# shaped like a home connection: each node in its own network namespace on
# a bridge, every link RATE with DELAY each way (100 Mbit/s and 25 ms: a
# 50 ms round trip). One node imports the built-in model and a text, submits
# the job and volunteers; the others volunteer. When the job is done, each
# node's share of its rounds' time spent training is printed (the
# "utilisation" of mycel train status --json), with the bytes it averaged.
#
# Needs root (ip netns, tc netem) and a built bin/mycel (make build).
# Usage: sudo tools/netem/diloco.sh   (N, RATE, DELAY, STEPS, INNER,
# ENCODING, THREADS, BATCH and SEQ override the defaults below.)
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-4}
RATE=${RATE:-100mbit}
DELAY=${DELAY:-25ms}
STEPS=${STEPS:-120}
INNER=${INNER:-30}
ENCODING=${ENCODING:-int8}
THREADS=${THREADS:-1}
BATCH=${BATCH:-512}
SEQ=${SEQ:-64}
BIN=$(pwd)/bin/mycel
MODEL=$(pwd)/models/tales.gguf

[ -x "$BIN" ] || { echo "no $BIN: run make build first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root: network namespaces and netem" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for i in $(seq 1 "$N"); do ip netns del "mycel$i" 2>/dev/null || true; done
	ip link del mycelbr 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# netem adds the delay; a kernel without it (sch_netem) gets the rate
# alone, through tbf, and the delay is left out (said below).
qdisc="netem delay $DELAY rate $RATE"
if ! tc qdisc add dev lo root netem delay 1ms 2>/dev/null; then
	echo "this kernel has no netem: links get $RATE (tbf) and no added delay" >&2
	DELAY=0ms
	qdisc="tbf rate $RATE burst 64kb latency 400ms"
else
	tc qdisc del dev lo root
fi

ip link add mycelbr type bridge
ip link set mycelbr up
for i in $(seq 1 "$N"); do
	ns=mycel$i
	ip netns add "$ns"
	ip link add "mveth$i" type veth peer name eth0 netns "$ns"
	ip link set "mveth$i" master mycelbr up
	ip -n "$ns" addr add "10.77.0.$i/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
	# Both directions of the link: what the node sends (its eth0) and
	# what it receives (the bridge's side).
	tc -n "$ns" qdisc add dev eth0 root $qdisc
	tc qdisc add dev "mveth$i" root $qdisc
done

cli() { local i=$1; shift; ip netns exec "mycel$i" "$BIN" --api 127.0.0.1:5150 "$@"; }
startnode() {
	local i=$1; shift
	ip netns exec "mycel$i" "$BIN" node --api 127.0.0.1:5150 --data "$work/n$i" \
		--listen "/ip4/10.77.0.$i/tcp/4001" --no-mdns --train -t "$THREADS" "$@" 2>"$work/n$i.log" &
	pids+=($!)
	for _ in $(seq 1 200); do cli "$i" status >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "node $i did not start:" >&2; cat "$work/n$i.log" >&2; exit 1
}

startnode 1
id1=$(cli 1 status --json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)
for i in $(seq 2 "$N"); do startnode "$i" --bootstrap "/ip4/10.77.0.1/tcp/4001/p2p/$id1"; done

for _ in $(seq 1 400); do
	echo "Once upon a time, a little fox named Tilly found a red kite in the tall grass. She ran up the hill with it, and the wind took the kite high into the sky."
done >"$work/fox.txt"
cli 1 models import "$MODEL" --name tales >/dev/null
cli 1 data import "$work/fox.txt" --name fox >/dev/null
cat >"$work/job.toml" <<EOF
model = "tales"
data = "fox"
method = "lora"
steps = $STEPS
seq_len = $SEQ
batch_tokens = $BATCH
eval_fraction = 0
checkpoint_every = 0
averaging = "diloco"
inner_steps = $INNER
encoding = "$ENCODING"
min_peers = $N
EOF
job=$(cli 1 train submit "$work/job.toml" | tail -1)
echo "job $job: $N nodes, links $RATE and $DELAY each way, $STEPS steps of $BATCH tokens, DiLoCo every $INNER steps, $ENCODING"
start=$(date +%s)
until cli 1 train status "$job" --json | grep -q '"state": "done"'; do
	sleep 2
	if [ $(( $(date +%s) - start )) -gt 3600 ]; then echo "not done in an hour" >&2; exit 1; fi
done
echo "done in $(( $(date +%s) - start )) s"
printf '%-6s %-12s %-14s %s\n' node utilisation averaged "tokens/s (group)"
for i in $(seq 1 "$N"); do
	st=$(cli "$i" train status "$job" --json)
	util=$(echo "$st" | sed -n 's/.*"utilisation": *\([0-9.e-]*\).*/\1/p' | head -1)
	bytes=$(echo "$st" | sed -n 's/.*"bytes": *\([0-9]*\).*/\1/p' | head -1)
	tps=$(echo "$st" | sed -n 's/.*"tokens_per_second": *\([0-9.e+-]*\).*/\1/p' | head -1)
	printf '%-6s %-12s %-14s %s\n' "$i" "${util:-?}" "${bytes:-?}" "${tps:-?}"
done
