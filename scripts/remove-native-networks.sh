#!/usr/bin/env bash
# Removes the bridges and nftables tables a private native engine made on
# the host (its BERTH_HOME is the argument), as the tests' Berth does on
# drop: benches start an engine in a throw-away home, and its bridges
# (berth-<id>, 172.18.0.0/16 and up) would otherwise outlive it and use up
# the private address pools.
#
#   scripts/remove-native-networks.sh BERTH_HOME
set -u
home=${1:?usage: scripts/remove-native-networks.sh BERTH_HOME}
for f in "$home"/native/networks/*/network.json; do
    [ -f "$f" ] || continue
    br=$(sed -n 's/.*"bridge"[[:space:]]*:[[:space:]]*"\([A-Za-z0-9_.-]*\)".*/\1/p' "$f" | head -1)
    [ -n "$br" ] || continue
    ip link del "$br" 2>/dev/null
    nft delete table ip "berth-$br" 2>/dev/null
done
exit 0
