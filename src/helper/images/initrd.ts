/**
 * The initramfs the tuned images boot with, made at build time (docs/boot.md). All it has
 * to do is load the modules for ext4 on a virtio disk, check and mount the root and start
 * systemd. Debian's initramfs-tools took 2.3 s for that under TCG: its udev, its scripts,
 * a kmod that reads the module indexes. This one is klibc's tools (already in the image,
 * from initramfs-tools), e2fsck with the libraries it links, the modules in load order
 * and a short /init. The guest's own /boot/initrd.img stays Debian's.
 */

/** Where the hook leaves it in the tree; the build copies it out as the image's initrd. */
export const DEVVM_INITRD_PATH = '/boot/devvm-initrd.img';

/**
 * /init, run by klibc's sh (dash). Kernel options it reads: root= (a device path), ro/rw,
 * rootfstype=. A failure says what failed on the console and leaves a shell there.
 */
const INIT = `#!/bin/sh
PATH=/bin
fail() { echo "devvm initramfs: $*"; exec sh; }
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev || fail "cannot mount /dev"
mount -t proc -o nodev,noexec,nosuid proc /proc || fail "cannot mount /proc"
root=/dev/vda fstype=ext4 ro=
read -r cmdline < /proc/cmdline
set -f
for w in $cmdline; do
  case $w in
    root=/dev/*) root=\${w#root=} ;;
    root=*) fail "$w: only a device path can be the root here" ;;
    rootfstype=*) fstype=\${w#rootfstype=} ;;
    ro) ro=-r ;;
    rw) ro= ;;
  esac
done
set +f
while read -r m; do insmod "$m" || fail "cannot load $m"; done < /modules
# virtio_blk names its disks while it loads; the wait is for a root given some other way.
n=0
while [ ! -b "$root" ]; do
  n=$((n + 1))
  [ $n -le 200 ] || fail "$root did not appear within 10 s"
  sleep 0.05
done
if [ "$fstype" = ext4 ]; then
  # 0: clean, 1: errors fixed; 2 (fixed, reboot advised) does not apply before the mount.
  e2fsck -p "$root"
  rc=$?
  [ $rc -le 2 ] || fail "e2fsck -p $root left errors it cannot fix alone (exit $rc); run e2fsck $root"
fi
mount -t "$fstype" $ro "$root" /root || fail "cannot mount $root ($fstype) on /root"
# systemd finds them mounted; run-init opens the console in the new root's /dev.
mount -o move /proc /root/proc || fail "cannot move /proc"
mount -o move /dev /root/dev || fail "cannot move /dev"
exec run-init /root /sbin/init "$@"
fail "run-init failed"
`;

/**
 * Part of BOOT_TUNING: runs in the customize hook with the tree at $R, after every package
 * (and so every module) is installed. The tools are the guest's, run inside its chroot.
 */
export const DEVVM_INITRD_HOOK = `
echo "devvm: making the boot initramfs"
mkdir -p "$R/tmp/devvm-initrd"
cat > "$R/tmp/devvm-initrd/init" <<'DEVVM_INIT'
${INIT}DEVVM_INIT
chroot "$R" /bin/sh -eu -c '
T=/tmp/devvm-initrd K=$(ls /lib/modules)
mkdir -p "$T/bin" "$T/lib" "$T/dev" "$T/proc" "$T/root" "$T/etc"
for b in sh insmod mount umount run-init sleep; do cp /usr/lib/klibc/bin/$b "$T/bin/"; done
cp /lib/klibc-*.so "$T/lib/"
cp /sbin/e2fsck "$T/bin/"
# e2fsck looks for the device in the mount table before it checks it.
ln -s /proc/mounts "$T/etc/mtab"
for l in $(ldd /sbin/e2fsck | awk "\\$2 == \\"=>\\" { print \\$3 } \\$1 ~ /^\\\\// { print \\$1 }"); do
  mkdir -p "$T$(dirname "$l")"
  cp -L "$l" "$T$l"
done
# The modules in load order (modprobe resolves the dependencies; crc32c for ext4 checksums).
modprobe -S "$K" -a --show-depends virtio_pci virtio_blk crc32c_generic ext4 | awk "\\$1 == \\"insmod\\" && !seen[\\$2]++ { print \\$2 }" > "$T/modules"
[ -s "$T/modules" ]
while read -r m; do mkdir -p "$T$(dirname "$m")"; cp "$m" "$T$m"; done < "$T/modules"
chmod 755 "$T/init"
cd "$T" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet > ${DEVVM_INITRD_PATH}
'
rm -rf "$R/tmp/devvm-initrd"
`;
