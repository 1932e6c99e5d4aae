#!/bin/sh
# lib-netns.sh - N network namespaces behind rate-limited links to the host,
# for the mining benchmarks and tests: bytes "counted on the wire" are the
# veths' own counters, not a program's tally.
#
# Sourced (root, iproute2):
#   . tools/bench/lib-netns.sh
#   netns_up N RATE           namespaces 1..N, each joined to the host by a
#                             veth pair; tc tbf limits both directions to
#                             RATE (tc's units: 100mbit).  Sets NETNS_HUB,
#                             the host's address every namespace reaches.
#                             (No added latency: netem is not in every
#                             kernel, this machine's included.)
#   netns_rate RATE           sets every link to RATE, both ends
#   netns_exec I CMD...       runs CMD in namespace I's network only
#                             (nsenter --net: the mounts stay the host's, so
#                             a FUSE daemon started there mounts for all)
#   netns_addr I              namespace I's address
#   netns_bytes [I]           "RX TX": bytes the host received from and sent
#                             to namespace I (all of them without I), read
#                             from /sys/class/net/<veth>/statistics
#   netns_down                removes it all (call it in an EXIT trap)
#
# The functions keep their variables under names of their own (_xx_...),
# since sh has no locals and the caller's names must survive.
#
# Addresses: 10.NETNS_NET.I.2/24 in namespace I, 10.NETNS_NET.I.1 on the
# host's end; nothing else is routed (each namespace's default route is its
# link to the host, and the host forwards nothing), so traffic stays on
# these links and the host.  NETNS_NET (default: from the pid, 100-249) and
# NETNS_PREFIX (default: "lf<pid>") keep two users of the library apart.

NETNS_PREFIX=${NETNS_PREFIX:-lf$$}
NETNS_NET=${NETNS_NET:-$((100 + $$ % 150))}
NETNS_N=0

netns_name() { echo "${NETNS_PREFIX}n$1"; }
netns_host_if() { echo "${NETNS_PREFIX}h$1"; }
netns_addr() { echo "10.$NETNS_NET.$1.2"; }

# netns_check: 0 when this process can make namespaces, else says why.
netns_check() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "lib-netns.sh: namespaces and veths need root" >&2
		return 1
	fi
	for b in ip tc nsenter; do
		if ! command -v "$b" >/dev/null 2>&1; then
			echo "lib-netns.sh: $b not installed (apt install iproute2 util-linux)" >&2
			return 1
		fi
	done
	return 0
}

# tc on one end (in namespace $3 when given): tbf at rate $2.
netns_shape() {
	_sh_run=
	[ -n "${3:-}" ] && _sh_run="ip netns exec $3"
	# A burst of 64 KiB: a GSO frame of a veth fits, so none is dropped whole.
	$_sh_run tc qdisc add dev "$1" root tbf rate "$2" burst 64kb latency 200ms
}

netns_up() {
	netns_check || return 1
	_up_i=1
	while [ "$_up_i" -le "$1" ]; do
		_up_ns=$(netns_name "$_up_i")
		_up_h=$(netns_host_if "$_up_i")
		_up_r=${NETNS_PREFIX}r$_up_i
		ip netns add "$_up_ns" || return 1
		NETNS_N=$_up_i
		ip link add "$_up_h" type veth peer name "$_up_r" || return 1
		ip link set "$_up_r" netns "$_up_ns" || return 1
		ip addr add "10.$NETNS_NET.$_up_i.1/24" dev "$_up_h" || return 1
		ip link set "$_up_h" up || return 1
		ip -n "$_up_ns" addr add "$(netns_addr "$_up_i")/24" dev "$_up_r" || return 1
		ip -n "$_up_ns" link set "$_up_r" up || return 1
		ip -n "$_up_ns" link set lo up || return 1
		ip -n "$_up_ns" route add default via "10.$NETNS_NET.$_up_i.1" || return 1
		netns_shape "$_up_h" "$2" || return 1
		netns_shape "$_up_r" "$2" "$_up_ns" || return 1
		_up_i=$((_up_i + 1))
	done
	NETNS_HUB=10.$NETNS_NET.1.1
	export NETNS_HUB
}

# netns_rate RATE: every link's token bucket to RATE, both ends.
netns_rate() {
	_rt_i=1
	while [ "$_rt_i" -le "$NETNS_N" ]; do
		tc qdisc change dev "$(netns_host_if "$_rt_i")" root tbf rate "$1" burst 64kb \
			latency 200ms || return 1
		ip netns exec "$(netns_name "$_rt_i")" tc qdisc change dev "${NETNS_PREFIX}r$_rt_i" \
			root tbf rate "$1" burst 64kb latency 200ms || return 1
		_rt_i=$((_rt_i + 1))
	done
}

netns_exec() {
	_ex_ns=$(netns_name "$1")
	shift
	nsenter --net="/run/netns/$_ex_ns" -- "$@"
}

netns_bytes() {
	if [ -n "${1:-}" ]; then
		_by_d=/sys/class/net/$(netns_host_if "$1")/statistics
		echo "$(cat "$_by_d/rx_bytes") $(cat "$_by_d/tx_bytes")"
		return
	fi
	_by_rx=0 _by_tx=0 _by_i=1
	while [ "$_by_i" -le "$NETNS_N" ]; do
		_by_d=/sys/class/net/$(netns_host_if "$_by_i")/statistics
		_by_rx=$((_by_rx + $(cat "$_by_d/rx_bytes")))
		_by_tx=$((_by_tx + $(cat "$_by_d/tx_bytes")))
		_by_i=$((_by_i + 1))
	done
	echo "$_by_rx $_by_tx"
}

netns_down() {
	_dn_i=1
	while [ "$_dn_i" -le "$NETNS_N" ]; do
		ip link del "$(netns_host_if "$_dn_i")" 2>/dev/null
		ip netns del "$(netns_name "$_dn_i")" 2>/dev/null
		_dn_i=$((_dn_i + 1))
	done
	NETNS_N=0
}
