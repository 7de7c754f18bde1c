#!/bin/bash
# Builds initramfs.cpio.gz: busybox-static + the kernel modules the lab needs (in load order).
# Usage: build-initramfs.sh KROOT KVER OUT
set -euo pipefail
KROOT=$1 KV=$2 OUT=$3
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
mkdir -p "$W"/{bin,dev,proc,sys,newroot,mods}
cp /bin/busybox "$W/bin/busybox"
for a in sh mount umount insmod mkdir switch_root cat echo sleep poweroff ls; do ln -s busybox "$W/bin/$a"; done
i=0
for m in virtio_pci virtio_net 9pnet_virtio 9p crc32_generic rdma_rxe rdma_ucm ib_uverbs; do
  modprobe -d "$KROOT" -S "$KV" --show-depends "$m"
done | awk '$1=="insmod"{print $2}' | awk '!s[$0]++' | while read -r ko; do
  i=$((i+1)); cp "$ko" "$W/mods/$(printf %02d $i)-$(basename "$ko")"
done
cat > "$W/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for ko in /mods/*.ko; do insmod "$ko" || echo "initramfs: insmod $ko failed"; done
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /newroot || { echo "initramfs: 9p root mount failed"; sh; }
mount -t proc proc /newroot/proc; mount -t sysfs sys /newroot/sys; mount -t devtmpfs dev /newroot/dev
# /tmp stays the host's (read-only), so binaries built under it (a CI clone in /tmp) run in
# the guest; /run is the guest's own scratch.
mount -t tmpfs run /newroot/run
mount -t devpts devpts /newroot/dev/pts 2>/dev/null
# writable per-lab share at the same path it has on the host
lab=$(sed -n 's/.*lab.dir=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$lab" ]; then mkdir -p "/newroot$lab"; mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 lab "/newroot$lab"; fi
run=$(sed -n 's/.*lab.run=\([^ ]*\).*/\1/p' /proc/cmdline)
exec switch_root /newroot /bin/sh -c "${run:-/bin/sh}; echo o > /proc/sysrq-trigger"
INIT
chmod +x "$W/init"
(cd "$W" && find . | busybox cpio -o -H newc --quiet | gzip -1) > "$OUT"
ls -l "$OUT"; ls "$W/mods"
