#!/usr/bin/env bash
# The soft-RoCE lab: two small QEMU guests, each with an rxe device on its virtio NIC, joined by
# a UDP "wire" on 127.0.0.1 (QEMU's dgram netdev): RDMA RC queue pairs between them over RoCE v2,
# on a machine with no RDMA hardware and no usable KVM (guests run under TCG, one vCPU each).
# Guests run Debian's 6.1 kernel (it ships rdma_rxe as a module; the cloud kernel does not)
# from a 2 MB initramfs that mounts the host's / read-only over 9p, so rdma-core, perftest and
# the project's binaries run in the guest straight from the host. Addresses: 198.18.0.1/.2.
#
#   scripts/rdma-lab/lab.sh setup            # packages, guest kernel, initramfs (idempotent)
#   scripts/rdma-lab/lab.sh pair SCRIPT [ARG...]  # boot both guests; each runs SCRIPT ARG...
#                                            # with LAB_ROLE=1|2 and LAB_DIR (writable, shared)
#
# SCRIPT must end by itself: the guest powers off when it returns, and every command in it
# should run under `timeout` (a perftest client whose server is gone waits for ever).
# A guest cuts or restores its own wire by creating LAB_DIR/link-off-N or link-on-N (N its
# role): the host then sets the guest's NIC link down or up through QEMU's monitor (carrier
# lost, rxe port down, queue pairs kept: a pulled cable), and removes the file.
set -euo pipefail
LAB=${VIO_RDMA_LAB:-/var/tmp/vio-rdma-lab}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$LAB"

kernel_version() { cat "$LAB/kernel-version" 2>/dev/null; }

setup() {
    local packages="qemu-system-x86 busybox-static kmod rdma-core ibverbs-providers ibverbs-utils rdmacm-utils perftest socat"
    # shellcheck disable=SC2086
    if ! dpkg -s $packages >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null
    fi
    if [ -z "$(kernel_version)" ] || [ ! -f "$LAB/kroot/boot/vmlinuz-$(kernel_version)" ]; then
        # The package name moves with Debian's updates: resolve it through the meta-package.
        local pkg
        pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-6/ { print $2; exit }')
        (cd "$LAB" && rm -f linux-image-*.deb && apt-get download -qq "$pkg" 2>&1 | grep -v "unsandboxed" || true)
        rm -rf "$LAB/kroot" && dpkg -x "$LAB"/"$pkg"_*.deb "$LAB/kroot"
        local kv=${pkg#linux-image-}
        depmod -b "$LAB/kroot" "$kv"
        echo "$kv" > "$LAB/kernel-version"
    fi
    # Rebuilt when its script changed since.
    [ "$LAB/initramfs.cpio.gz" -nt "$here/build-initramfs.sh" ] || bash "$here/build-initramfs.sh" "$LAB/kroot" "$(kernel_version)" "$LAB/initramfs.cpio.gz" >/dev/null
    echo "rdma lab ready in $LAB (guest kernel $(kernel_version))"
}

# boot ROLE LOCALPORT REMOTEPORT SCRIPT: one guest in the background; its console in LAB.
boot() {
    local kv; kv=$(kernel_version)
    timeout "${VIO_RDMA_LAB_TIMEOUT:-120}" qemu-system-x86_64 -accel tcg -machine q35 -cpu max -smp 1 -m "${VIO_RDMA_LAB_MEMORY:-256}" \
        -nographic -no-reboot -monitor "unix:$LAB/monitor-$1.sock,server=on,wait=off" \
        -kernel "$LAB/kroot/boot/vmlinuz-$kv" -initrd "$LAB/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet panic=-1 lab.dir=$LAB lab.run=$LAB/guest-$1.sh" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
        -virtfs "local,path=$LAB,mount_tag=lab,security_model=none,multidevs=remap" \
        -netdev "dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=$2,remote.type=inet,remote.host=127.0.0.1,remote.port=$3" \
        -device "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:0$1,romfile=" \
        > "$LAB/console-$1.txt" 2>&1 &
}

# Serves the guests' link-off-N / link-on-N requests until both guests are gone.
links() {
    while kill -0 "$@" 2>/dev/null; do
        for role in 1 2; do
            for state in off on; do
                if [ -e "$LAB/link-$state-$role" ]; then
                    echo "set_link n0 $state" | socat - "UNIX-CONNECT:$LAB/monitor-$role.sock" >/dev/null 2>&1 || true
                    rm -f "$LAB/link-$state-$role"
                fi
            done
        done
        sleep 0.1
    done
}

pair() {
    local script; script=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    shift
    local args=""
    for a in "$@"; do args="$args '$a'"; done
    for role in 1 2; do
        # The guest's entry: network and rxe0 up, then the caller's script; its output in LAB.
        cat > "$LAB/guest-$role.sh" <<GUEST
#!/bin/sh
exec > "$LAB/out-$role.txt" 2>&1
ip link set lo up; ip addr add 198.18.0.$role/24 dev eth0; ip link set eth0 up
rdma link add rxe0 type rxe netdev eth0 || { echo "rdma link add failed"; exit 1; }
export LAB_ROLE=$role LAB_DIR="$LAB"
timeout ${VIO_RDMA_LAB_TIMEOUT:-120} sh "$script"$args
echo "lab script exited with \$?"
GUEST
        chmod +x "$LAB/guest-$role.sh"
    done
    local p1=$((40000 + RANDOM % 10000)); local p2=$((p1 + 1))
    rm -f "$LAB"/link-o*-? "$LAB"/out-?.txt
    boot 1 "$p1" "$p2"; local g1=$!
    boot 2 "$p2" "$p1"; local g2=$!
    links "$g1" "$g2" &
    wait
    for role in 1 2; do echo "== guest $role"; cat "$LAB/out-$role.txt" 2>/dev/null || tail -5 "$LAB/console-$role.txt"; done
}

case "${1:-}" in
    setup) setup ;;
    pair) [ $# -ge 2 ] || { echo "usage: $0 pair SCRIPT [ARG...]" >&2; exit 2; }; setup >/dev/null; shift; pair "$@" ;;
    *) echo "usage: $0 setup | pair SCRIPT [ARG...]" >&2; exit 2 ;;
esac
