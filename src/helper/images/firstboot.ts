/**
 * What the images devvm builds carry for their own boots, beside cloud-init: the
 * every-boot root filesystem growth (devvm-growfs). Runs inside the customize hook
 * after BASE_CONFIGURE ($R is the tree). docs/firstboot.md says why each part is there.
 */

// String.raw: the shell text keeps its backslashes; it holds no "${" (no interpolation).
export const FIRSTBOOT_HOOK = String.raw`
echo "devvm: installing the first-boot units"
mkdir -p "$R/usr/local/lib/devvm" "$R/etc/systemd/system/sysinit.target.wants"

# Root is ext4 directly on /dev/vda (no partition table): a disk made larger than the
# 4 GiB base (create --disk, set --disk) is used once the filesystem grows to it. Every
# boot, so a disk grown while the VM was off is used at its next boot; when the sizes
# already match it only reads the superblock.
cat > "$R/usr/local/lib/devvm/growfs" <<'EOF'
#!/bin/sh
# devvm-growfs: grows the root filesystem on /dev/vda to the disk's size.
set -eu
dev=/dev/vda
[ -b "$dev" ] && [ -r /sys/class/block/vda/size ] || exit 0
read -r sectors < /sys/class/block/vda/size
info=$(dumpe2fs -h "$dev" 2>/dev/null) || exit 0
count=$(printf '%s\n' "$info" | sed -n 's/^Block count: *\([0-9]*\)$/\1/p')
bsize=$(printf '%s\n' "$info" | sed -n 's/^Block size: *\([0-9]*\)$/\1/p')
[ -n "$count" ] && [ -n "$bsize" ] || exit 0
if [ "$count" -lt $((sectors * 512 / bsize)) ]; then
  echo "growing the root filesystem from $((count * bsize / 1048576)) MiB to $((sectors / 2048)) MiB"
  exec resize2fs "$dev"
fi
EOF
chmod 755 "$R/usr/local/lib/devvm/growfs"
# Beside the rest of early boot (not Before=sysinit.target), but before logins, so a user
# sees the whole disk from the first shell on.
cat > "$R/etc/systemd/system/devvm-growfs.service" <<'EOF'
[Unit]
Description=Grow the root filesystem to the disk's size (devvm)
DefaultDependencies=no
After=systemd-remount-fs.service
Before=systemd-user-sessions.service ssh.service shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
ExecStart=/usr/local/lib/devvm/growfs

[Install]
WantedBy=sysinit.target
EOF
ln -sf ../devvm-growfs.service "$R/etc/systemd/system/sysinit.target.wants/devvm-growfs.service"
`;
