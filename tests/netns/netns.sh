#!/bin/sh
# netns.sh - the network-namespace harness of the mining benchmarks
# (tools/bench/lib-netns.sh): two namespaces behind 8 Mbit/s links fetch a
# 1 MiB file from an HTTP server on the host's hub address; each link's
# counters see the file (and no more than its frames' headers on top), the
# other link does not, the token bucket held the traffic back (its
# overlimits count, not a timing), and nothing is left after netns_down.
# Exits 77 (skip) when not root or without iproute2, curl or python3.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/tools/bench/lib-netns.sh"
netns_check || exit 77
for b in curl python3; do
	command -v "$b" >/dev/null || { echo "netns.sh: $b not installed" >&2; exit 77; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/llmfs-netns.XXXXXX")
srv=
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null
	netns_down
	rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 1" INT TERM
fail=0
check() {
	if eval "$1"; then
		echo "ok   $2"
	else
		echo "FAIL $2 ($1)"
		fail=1
	fi
}

netns_up 2 8mbit || { echo "netns_up failed" >&2; exit 1; }
size=1048576
head -c "$size" /dev/urandom > "$tmp/blob"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind "$NETNS_HUB" --directory "$tmp" "$port" >/dev/null 2>&1 &
srv=$!
i=0
until curl -s -o /dev/null "http://$NETNS_HUB:$port/" || [ $i -ge 100 ]; do
	sleep 0.1
	i=$((i + 1))
done

set -- $(netns_bytes 1); rx1=$1 tx1=$2
set -- $(netns_bytes 2); rx2=$1 tx2=$2
netns_exec 1 curl -sf -o "$tmp/got1" "http://$NETNS_HUB:$port/blob"
check '[ $? -eq 0 ] && cmp -s "$tmp/blob" "$tmp/got1"' "namespace 1 fetches the file through its link"
check '[ "$(netns_exec 1 cat /proc/net/dev | grep -c ": ")" -eq 2 ]' "namespace 1 has lo and its veth only"
set -- $(netns_bytes 1); d_tx1=$(($2 - tx1)); d_rx1=$(($1 - rx1))
set -- $(netns_bytes 2); d_tx2=$(($2 - tx2))
echo "  link 1: host sent $d_tx1 B, received $d_rx1 B for a $size B file"
check '[ $d_tx1 -ge $size ] && [ $d_tx1 -le $((size + size / 10)) ]' "link 1 counts the file and its frames' headers"
check '[ $d_tx2 -lt 4096 ]' "link 2 carries none of it"
ol=$(tc -s qdisc show dev "$(netns_host_if 1)" | sed -n 's/.*overlimits \([0-9]*\).*/\1/p' | head -1)
check '[ "${ol:-0}" -gt 0 ]' "the token bucket held the transfer back (overlimits $ol)"
rate=$(tc qdisc show dev "$(netns_host_if 1)" | sed -n 's/.*rate \([^ ]*\).*/\1/p')
check '[ "$rate" = 8Mbit ]' "the host end is shaped to 8Mbit ($rate)"
rate=$(netns_exec 2 tc qdisc show | sed -n 's/.*tbf.*rate \([^ ]*\).*/\1/p')
check '[ "$rate" = 8Mbit ]' "the namespace end is shaped too ($rate)"

# Upload from namespace 2 to a sink on the host: link 2's receive counter
# sees it.
python3 -c '
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
n = 0
while True:
    b = c.recv(65536)
    if not b:
        break
    n += len(b)
open(sys.argv[2], "w").write(str(n))
' "$NETNS_HUB" "$tmp/sunk" > "$tmp/sink.port" &
sink=$!
i=0
until [ -s "$tmp/sink.port" ] || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
set -- $(netns_bytes); rx_all=$1
netns_exec 2 python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(open(sys.argv[3], "rb").read())
s.close()
' "$NETNS_HUB" "$(cat "$tmp/sink.port")" "$tmp/blob"
wait "$sink"
check '[ "$(cat "$tmp/sunk")" = $size ]' "the sink got the upload"
set -- $(netns_bytes 2); d_rx2=$(($1 - rx2))
check '[ $d_rx2 -ge $size ]' "an upload from namespace 2 is counted on link 2 ($d_rx2 B)"
set -- $(netns_bytes); d_all=$(($1 - rx_all))
check '[ $d_all -ge $size ]' "netns_bytes sums the links ($d_all B)"

netns_rate 100mbit
check '[ "$(tc qdisc show dev "$(netns_host_if 2)" | sed -n "s/.*rate \([^ ]*\).*/\1/p")" = 100Mbit ]' "netns_rate changes the host ends"
check '[ "$(netns_exec 1 tc qdisc show | sed -n "s/.*tbf.*rate \([^ ]*\).*/\1/p")" = 100Mbit ]' "and the namespace ends"

netns_down
check '! ip link show "$(netns_host_if 1)" >/dev/null 2>&1' "netns_down removes the veths"
check '! ip netns list | grep -q "^$(netns_name 1)"' "netns_down removes the namespaces"

exit $fail
