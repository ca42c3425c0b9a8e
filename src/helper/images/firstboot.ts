/**
 * What the images devvm builds carry for their own boots, beside cloud-init: the
 * every-boot root filesystem growth (devvm-growfs) and devvm's own first setup
 * (devvm-firstboot), which reads the host's seed from QEMU's fw_cfg and does what the
 * cloud-init seed does, without cloud-init's Python stages. cloud-init stays installed
 * but disabled, unless the kernel command line says cloud-init=enabled (the helper adds
 * it for VMs provisioned through cloud-init). Runs inside the customize hook after
 * BASE_CONFIGURE ($R is the tree). docs/firstboot.md says why each part is there.
 */
import { DEVVM_SEED_FWCFG, DEVVM_SEED_MAGIC } from '../devvmseed';
import { READY_MARKER } from '../provision';

// String.raw: the shell text keeps its backslashes; it holds no "${" (no interpolation).
const GROWFS = String.raw`
echo "devvm: installing the first-boot units"
mkdir -p "$R/usr/local/lib/devvm" "$R/etc/systemd/system/sysinit.target.wants"

# Root is ext4 directly on /dev/vda (no partition table): a disk made larger than the
# 4 GiB base (create --disk, set --disk) is used once the filesystem grows to it. Every
# boot, so a disk grown while the VM was off is used at its next boot. The disk size the
# filesystem last filled is kept in the filesystem itself: when it is still the disk's
# size, nothing is read and nothing forked (dumpe2fs and two seds took 2 s of a cold boot
# under emulation); a snapshot from before a grow carries its own, older size.
cat > "$R/usr/local/lib/devvm/growfs" <<'EOF'
#!/bin/sh
# devvm-growfs: grows the root filesystem on /dev/vda to the disk's size.
set -eu
dev=/dev/vda
stamp=/var/lib/devvm/filled-sectors
[ -b "$dev" ] && [ -r /sys/class/block/vda/size ] || exit 0
read -r sectors < /sys/class/block/vda/size
last=
[ -r "$stamp" ] && read -r last < "$stamp" || :
[ "$last" = "$sectors" ] && exit 0
info=$(dumpe2fs -h "$dev" 2>/dev/null) || exit 0
count=$(printf '%s\n' "$info" | sed -n 's/^Block count: *\([0-9]*\)$/\1/p')
bsize=$(printf '%s\n' "$info" | sed -n 's/^Block size: *\([0-9]*\)$/\1/p')
[ -n "$count" ] && [ -n "$bsize" ] || exit 0
if [ "$count" -lt $((sectors * 512 / bsize)) ]; then
  echo "growing the root filesystem from $((count * bsize / 1048576)) MiB to $((sectors / 2048)) MiB"
  resize2fs "$dev"
fi
mkdir -p /var/lib/devvm
printf '%s\n' "$sectors" > "$stamp"
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

/**
 * The guest side of the devvm seed (devvmseed.ts writes it): POSIX sh, no eval. Every
 * field is base64 on its own line under a fixed name; each is decoded into its own file
 * in a private directory and used from there as one quoted word, never as shell text.
 * The host validated every value; the ones used as names are checked again here.
 */
const FIRSTBOOT_SCRIPT = String.raw`#!/bin/sh
# devvm-firstboot: first setup of a devvm VM from the seed in QEMU fw_cfg (docs/firstboot.md).
set -eu
umask 077
SEED=/sys/firmware/qemu_fw_cfg/by_name/@FWCFG@/raw
DONE=/var/lib/devvm/instance-id
[ -e "$SEED" ] || modprobe -q qemu_fw_cfg 2>/dev/null || :
# No seed: this boot has nothing to set up.
[ -r "$SEED" ] || exit 0

say() { printf '%s\n' "$*" > /dev/ttyS0 2>/dev/null || :; printf '%s\n' "$*"; }
fail() { say "devvm-firstboot failed: $*"; exit 1; }
# A one-line field into $w ($2 names it in the error, else $1). A read that finds a newline
# fails it: no such value has one, not even at its end.
line() {
  w=
  what=$1
  [ $# -lt 2 ] || what=$2
  if IFS= read -r w < "$D/$1"; then fail "invalid $what in the seed"; fi
}
# A field that must be non-empty and made only of the characters $2 allows, into $w.
word() {
  line "$1"
  case $w in ''|*[!$2]*) fail "invalid $1 in the seed" ;; esac
}

D=$(mktemp -d /run/devvm-seed.XXXXXX)
trap 'rm -rf "$D"' EXIT
# Every field into its own file by one awk instead of a base64 per field: under emulation
# each process costs 50-100 ms, and this runs before sysinit.target. LC_ALL=C: %c writes
# the byte itself.
rc=0
LC_ALL=C awk -v dir="$D" -v magic="@MAGIC@" '
function fail(code) { bad = code; exit code }
BEGIN {
  abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  for (i = 0; i < 64; i++) val[substr(abc, i + 1, 1)] = i
}
NR == 1 { if ($0 != magic) fail(3); next }
{
  if (NF > 2 || $1 !~ /^(instance-id|hostname|user|full-name|password-hash|autologin|ssh|clone|authorized-keys|host-key|host-key-pub)$/) fail(4)
  s = NF == 2 ? $2 : ""
  if (length(s) % 4 || s !~ /^[A-Za-z0-9+\/]*=?=?$/) fail(5)
  out = dir "/" $1
  printf "" > out
  for (i = 1; i <= length(s); i += 4) {
    q = substr(s, i, 4)
    n = val[substr(q, 1, 1)] * 262144 + val[substr(q, 2, 1)] * 4096 + val[substr(q, 3, 1)] * 64 + val[substr(q, 4, 1)]
    printf "%c", int(n / 65536) > out
    if (substr(q, 3, 1) != "=") printf "%c", int(n / 256) % 256 > out
    if (substr(q, 4, 1) != "=") printf "%c", n % 256 > out
  }
  close(out)
}
END { if (bad) exit bad; if (NR == 0) exit 2 }' "$SEED" || rc=$?
case $rc in
  0) ;;
  2) fail "empty seed" ;;
  3) fail "unknown seed format" ;;
  4) fail "unknown seed field" ;;
  5) fail "a seed field is not base64" ;;
  *) fail "the seed cannot be read" ;;
esac
for k in instance-id hostname user full-name autologin ssh clone authorized-keys host-key host-key-pub; do
  [ -f "$D/$k" ] || fail "the seed lacks $k"
done

word instance-id 'A-Za-z0-9._-'; id=$w
# This instance was set up already (a reboot before the host dropped the seed): say so only.
done_id=
[ -f "$DONE" ] && IFS= read -r done_id < "$DONE" || :
read -r up _ < /proc/uptime
if [ "$done_id" = "$id" ]; then
  say "@MARKER@ $id after $up s (set up before)"
  exit 0
fi
word hostname 'a-z0-9-'; host=$w
word user 'a-z0-9_-'; user=$w
case $user in [!a-z_]*) fail "invalid user in the seed" ;; esac
word clone '01'; clone=$w
word ssh '01'; ssh=$w
word autologin '01'; autologin=$w
reload=no

# Identity: the hostname (and the /etc/hosts entry sudo resolves it by), a clone's machine-id.
printf '%s\n' "$host" > /etc/hostname
printf '%s' "$host" > /proc/sys/kernel/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n' "$host" > /etc/hosts
chmod 644 /etc/hostname /etc/hosts
if [ "$clone" = 1 ]; then
  rm -f /etc/machine-id /var/lib/dbus/machine-id
  systemd-machine-id-setup > /dev/null
fi

# The host key made on the host (pinned in its known_hosts); every other one goes.
grep -q '^-----BEGIN OPENSSH PRIVATE KEY-----$' "$D/host-key" || fail "invalid host key in the seed"
grep -q '^ssh-ed25519 ' "$D/host-key-pub" || fail "invalid host key in the seed"
rm -f /etc/ssh/ssh_host_*
install -m 600 "$D/host-key" /etc/ssh/ssh_host_ed25519_key
install -m 644 "$D/host-key-pub" /etc/ssh/ssh_host_ed25519_key.pub
mkdir -p -m 755 /etc/ssh/sshd_config.d
printf '%s\n' '# devvm: keys only, no root' 'PasswordAuthentication no' 'KbdInteractiveAuthentication no' 'PermitRootLogin no' > /etc/ssh/sshd_config.d/50-devvm.conf
chmod 644 /etc/ssh/sshd_config.d/50-devvm.conf
usermod -L root

# The first user (a clone keeps the one on its disk, with their password and keys).
if [ "$clone" = 0 ]; then
  if ! getent passwd "$user" > /dev/null; then
    line full-name
    useradd --create-home --shell /bin/bash --groups sudo --user-group --comment "$w" "$user" ||
      fail "Failed to create user $user"
  fi
  if [ -f "$D/password-hash" ]; then
    line password-hash 'password hash'; hash=$w
    case $hash in '$6$'*) ;; *) fail "invalid password hash in the seed" ;; esac
    printf '%s:%s\n' "$user" "$hash" | chpasswd --encrypted
  else
    usermod -L "$user"
    printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" > /etc/sudoers.d/90-devvm-users
    chmod 440 /etc/sudoers.d/90-devvm-users
  fi
  home=$(getent passwd "$user" | cut -d: -f6)
  install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
  install -m 600 -o "$user" -g "$user" "$D/authorized-keys" "$home/.ssh/authorized_keys"
  # Lingering: the user's systemd manager starts at boot instead of inside the first login
  # (2 s of it under emulation), and user services run without a session open.
  mkdir -p -m 755 /var/lib/systemd/linger
  : > "/var/lib/systemd/linger/$user"
fi

# SSH off: masked before sshd can ever listen (this runs before sysinit.target; ssh.service
# and ssh.socket start after it); the reload turns the start job already queued into a failure.
if [ "$ssh" = 0 ]; then
  ln -sf /dev/null /etc/systemd/system/ssh.service
  ln -sf /dev/null /etc/systemd/system/ssh.socket
  reload=yes
fi
# Console autologin: the drop-in the cloud-init seed writes (the desktop's tty1 reads it too).
if [ "$autologin" = 1 ]; then
  mkdir -p -m 755 /etc/systemd/system/serial-getty@ttyS0.service.d
  printf '%s\n' '[Service]' 'ExecStart=' "ExecStart=-/sbin/agetty --autologin $user --keep-baud 115200,57600,38400,9600 - \$TERM" > /etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf
  chmod 644 /etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf
  reload=yes
fi
# The units were loaded before this ran: a new mask or drop-in takes a reload.
[ "$reload" = no ] || systemctl daemon-reload

mkdir -p -m 755 /var/lib/devvm
printf '%s\n' "$id" > "$DONE.tmp"
# Not a secret (the umask above is for the seed's fields): readable, like /etc/machine-id.
chmod 644 "$DONE.tmp"
mv "$DONE.tmp" "$DONE"
sync
read -r up _ < /proc/uptime
say "@MARKER@ $id after $up s"
`
  .replace(/@FWCFG@/g, DEVVM_SEED_FWCFG)
  .replace(/@MAGIC@/g, DEVVM_SEED_MAGIC)
  .replace(/@MARKER@/g, READY_MARKER);

/**
 * devvm-firstboot runs every boot (a few milliseconds when there is no seed, or its
 * instance was set up before) and before sysinit.target: every unit with default
 * dependencies (ssh.service, ssh.socket, the gettys, logins) starts after it.
 */
const FIRSTBOOT_UNITS = String.raw`
cat > "$R/usr/local/lib/devvm/firstboot" <<'DEVVM_SCRIPT_END'
${FIRSTBOOT_SCRIPT}DEVVM_SCRIPT_END
chmod 755 "$R/usr/local/lib/devvm/firstboot"
cat > "$R/etc/systemd/system/devvm-firstboot.service" <<'EOF'
[Unit]
Description=devvm first setup from the host's seed (user, SSH, host key)
DefaultDependencies=no
After=systemd-remount-fs.service local-fs.target systemd-modules-load.service
Before=sysinit.target ssh.service ssh.socket systemd-user-sessions.service getty.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
ExecStart=/usr/local/lib/devvm/firstboot
TimeoutStartSec=5min

[Install]
WantedBy=sysinit.target
EOF
ln -sf ../devvm-firstboot.service "$R/etc/systemd/system/sysinit.target.wants/devvm-firstboot.service"
# cloud-init stays (images from here can still be provisioned through it, and the bench
# compares both) but costs nothing: its generator disables it because of this file,
# unless the kernel command line says cloud-init=enabled, which it reads first.
touch "$R/etc/cloud/cloud-init.disabled"
`;

export const FIRSTBOOT_HOOK = GROWFS + FIRSTBOOT_UNITS;
