#!/bin/sh
# PID 1 of the test guest (`cargo xtask vm`): a pure cgroup v2 machine like a CI node's.
# It mounts what a systemd host would, runs each test binary named in /tests.list on its
# own, and writes the report to the second serial port (ttyS1), in blocks framed by
# `@@vm@@` lines that xtask parses (xtask/src/vm/report.rs). ttyS0 is the console.
export PATH=/bin HOME=/root TMPDIR=/tmp CI=true RUST_BACKTRACE=1 NO_COLOR=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
ip link set lo up
stty -F /dev/ttyS1 raw -echo 2>/dev/null
report() { cat > /dev/ttyS1; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

# The controllers a CI node's systemd delegates to its services and containers.
echo "+cpu +memory +io +pids" > /sys/fs/cgroup/cgroup.subtree_control
# A 1 GiB block device under /var/tmp (the tests write up to 512 MiB there), so writes with O_DIRECT reach the block layer and the
# io controller counts them (the root file system here is RAM, which it never counts).
insmod /lib/modules/brd.ko rd_nr=1 rd_size=1048576 &&
    mke2fs -q /dev/ram0 >/dev/null && mount -t ext4 /dev/ram0 /var/tmp ||
    echo "@@vm@@ note no block device under /var/tmp" | report

{
    echo "@@vm@@ kernel $(uname -r) $(uname -v)"
    echo "@@vm@@ cpus $(nproc) memory_kib $(awk '/MemTotal/ {print $2}' /proc/meminfo)"
    echo "@@vm@@ controllers $(cat /sys/fs/cgroup/cgroup.subtree_control)"
    echo "@@vm@@ begin check"
} | report
COLLECTOR=$(cat /collector.path)
t0=$(uptime_s)
"$COLLECTOR" check > /tmp/check.out 2>&1
rc=$?
# What a collector's start costs here (mostly loading the eBPF program): every test pays it.
seconds=$(awk "BEGIN { printf \"%.1f\", $(uptime_s) - $t0 }")
{ cat /tmp/check.out; echo "(took $seconds s)"; echo; echo "@@vm@@ end check rc=$rc"; } | report

# Each line of /tests.list: LABEL BINARY ARGS...
while read -r label binary args; do
    [ -n "$label" ] || continue
    echo "guest: $label ..." > /dev/console
    echo "@@vm@@ begin test $label" | report
    t0=$(uptime_s)
    # shellcheck disable=SC2086 # ARGS are words by design
    # Straight to the report: if the guest dies in a test, what it printed is there.
    "$binary" $args > /dev/ttyS1 2>&1 < /dev/null
    rc=$?
    t1=$(uptime_s)
    seconds=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
    echo "guest: $label rc=$rc in $seconds s" > /dev/console
    { echo; echo "@@vm@@ end test $label rc=$rc seconds=$seconds"; } | report
done < /tests.list

echo "@@vm@@ done" | report
poweroff -f
