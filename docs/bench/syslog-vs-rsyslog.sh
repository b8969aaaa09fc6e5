#!/usr/bin/env bash
# Side-by-side: RFC 5424 lines over one TCP connection into a file, batchpilot
# against rsyslog, at matched durability (an fsync per batch of 256 lines),
# interleaved runs, medians. Everything runs on 127.0.0.1 and stops by itself.
#
# Usage: docs/bench/syslog-vs-rsyslog.sh [LINES] [ROUNDS]   (default 1000000 3)
# Needs: rsyslogd (Debian's rsyslog package), bash, curl, go.
set -euo pipefail
cd "$(dirname "$0")/../.."
lines=${1:-1000000}
rounds=${2:-3}
work=$(mktemp -d /tmp/bp-vs-rsyslog.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

command -v rsyslogd >/dev/null || { echo "rsyslogd not found: apt-get install rsyslog" >&2; exit 1; }
go build -o "$work/batchpilot" ./cmd/batchpilot

# The traffic: identical ~200-byte RFC 5424 lines, made once, sent by cat
# through bash's /dev/tcp, so the sender costs the same for both.
line='<134>1 2026-11-25T10:00:00.123456Z web-01 checkout 4242 ORD [meta@32473 id="x"] order placed for user u-12345 in 42ms path=/api/v1/orders status=200 bytes=5120 region=eu-west-1 trace=4bf92f3577b34da6 xxxxxxxxxx'
{ yes "$line" || true; } | head -n "$lines" > "$work/lines.txt"
echo "traffic: $lines lines of $(( ${#line} + 1 )) bytes, one TCP connection"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

# rsyslog: imtcp → a ruleset queue that dequeues 256 at a time → omfile with
# a JSON template of the parsed fields (as batchpilot writes them) and
# sync="on" (fsync of file and directory after every batch).
run_rsyslog() { # mode: sync|nosync
	local mode=$1 port out conf pidf sync=on
	[ "$mode" = nosync ] && sync=off
	port=$(free_port); out="$work/rsyslog-$mode.ndjson"; conf="$work/rsyslog.conf"; pidf="$work/rsyslog.pid"
	rm -f "$out"
	cat > "$conf" <<CONF
global(workDirectory="$work")
module(load="imtcp" maxSessions="10")
template(name="json" type="list" option.jsonf="on") {
  property(outname="facility" name="syslogfacility" format="jsonf" datatype="number")
  property(outname="severity" name="syslogseverity" format="jsonf" datatype="number")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="proc_id" name="procid" format="jsonf")
  property(outname="msg_id" name="msgid" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="message" name="msg" format="jsonf")
}
ruleset(name="bench" queue.type="LinkedList" queue.size="500000" queue.dequeueBatchSize="256") {
  action(type="omfile" file="$out" template="json" sync="$sync" flushOnTXEnd="on" ioBufferSize="1m")
}
input(type="imtcp" port="$port" ruleset="bench")
CONF
	rsyslogd -n -f "$conf" -i "$pidf" >"$work/rsyslog.log" 2>&1 &
	local pid=$!
	for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
	# one sample line gives the output size per line
	local t0 t1 want size
	t0=$(now)
	cat "$work/lines.txt" > /dev/tcp/127.0.0.1/$port
	for _ in $(seq 600); do [ -s "$out" ] && break; sleep 0.05; done
	want=$(( $(head -n1 "$out" | wc -c) * lines ))
	while :; do size=$(stat -c %s "$out"); [ "$size" -ge "$want" ] && break; sleep 0.05; done
	t1=$(now)
	kill "$pid"; wait "$pid" 2>/dev/null || true
	python3 -c "print(round($lines/($t1-$t0)))"
}

# batchpilot: the agent with the file sink, a fixed batch of 256 (static),
# every batch fsynced before it counts as written.
run_batchpilot() { # flush concurrency
	local conc=$1 dir port sport url t0 t1
	dir="$work/bp"; rm -rf "$dir"
	port=$(free_port); sport=$(free_port)
	"$work/batchpilot" agent --data-dir "$dir" --http-addr 127.0.0.1:$port --syslog-addr 127.0.0.1:$sport \
		--gossip-addr 127.0.0.1:0 --raft-addr 127.0.0.1:0 --bootstrap-expect 1 --log-level warn \
		--controller static --batch-size 256 --flush-concurrency "$conc" 2>"$work/bp.log" &
	local pid=$!
	url="http://127.0.0.1:$port"
	for _ in $(seq 200); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.05; done
	t0=$(now)
	cat "$work/lines.txt" > /dev/tcp/127.0.0.1/$sport
	# Both sides poll every 50 ms. (Prometheus prints large counts as
	# 1e+06: compare in awk.)
	until curl -s "$url/metrics" | awk -v n="$lines" '/^batchpilot_records_written_total /{ok = ($2 >= n)} END{exit !ok}'; do
		sleep 0.05
	done
	t1=$(now)
	kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
	python3 -c "print(round($lines/($t1-$t0)))"
}

median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
declare -A res
for r in $(seq "$rounds"); do
	a=$(run_rsyslog sync); b=$(run_batchpilot 1); c=$(run_rsyslog nosync); d=$(run_batchpilot 4)
	res[rs_sync]+="$a "; res[bp_c1]+="$b "; res[rs_nosync]+="$c "; res[bp_c4]+="$d "
	echo "round $r/$rounds: rsyslog+fsync $a, batchpilot 1 flush $b, rsyslog no fsync $c, batchpilot 4 flushes $d lines/s" >&2
done
printf '\n| setup | lines/s (median of %d) | runs |\n|---|---|---|\n' "$rounds"
for k in rs_sync bp_c1 bp_c4 rs_nosync; do
	case $k in
		rs_sync) name="rsyslog $(rsyslogd -v | head -1 | awk '{print $2}'), fsync per 256-line batch";;
		rs_nosync) name="rsyslog, page cache only (no fsync)";;
		bp_c1) name="batchpilot, fsync per 256-line batch, 1 flush at a time";;
		bp_c4) name="batchpilot, 256-line batches, 4 concurrent flushes sharing fsyncs";;
	esac
	printf '| %s | %s | %s |\n' "$name" "$(tr ' ' '\n' <<<"${res[$k]}" | grep . | median)" "${res[$k]}"
done
