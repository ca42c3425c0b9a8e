/**
 * The shell hooks mmdebstrap runs while building the Debian images. Lines the hooks print
 * starting with "devvm: " are progress messages (see MmdebstrapProgress). The plain
 * recipe's customize hook is BASE_CONFIGURE (guestConfig, what any devvm guest needs, then
 * BOOT_TUNING, what makes its boot short) followed by INITRAMFS; recipes that add to the
 * guest put their part between the two (before the one initramfs run). The bench's
 * debian-12-stock recipe leaves the tuning out (docs/boot.md).
 */
import { FIRSTBOOT_HOOK } from './firstboot';
import { DEVVM_INITRD_HOOK } from './initrd';
import { DEVVM_SEED_FWCFG } from '../devvmseed';

// Keep update-initramfs from running for the kernel's postinst and again for every
// trigger while packages install (about 27 s each under mmdebstrap); the customize hook
// runs it once at the end.
export const ESSENTIAL_HOOK = `set -eu
chroot "$1" dpkg-divert --quiet --local --rename --divert /usr/sbin/update-initramfs.devvm --add /usr/sbin/update-initramfs
ln -s /bin/true "$1/usr/sbin/update-initramfs"
`;

/**
 * The customize hook's first part: what makes the tree a devvm guest (root on /dev/vda,
 * DHCP on any NIC, the NoCloud seed only, per-VM identity at first boot, a serial getty,
 * consoles that follow the display). It runs as (namespace) root with the tree at $1, in
 * both build modes. `sshdTest`: keep Debian's "sshd -t" before every sshd start.
 */
function guestConfig(sshdTest: boolean): string {
  return `set -eu
R="$1"

echo "devvm: configuring the image"
# Root is the whole virtio disk: no partition table, no bootloader (direct kernel boot).
echo '/dev/vda / ext4 defaults 0 1' > "$R/etc/fstab"

# Every ethernet NIC gets DHCP when it appears, whatever its name: virtio-net's name
# follows its PCI slot (enp0s2, or enp0s3 while the seed disk sits before it on q35; ens3
# on pc). Only allow-hotplug, no "auto": with an "auto" interface ifupdown-pre.service
# runs "udevadm settle", which held network.target (and so sshd) back by up to 10 s.
# A pattern alone ("allow-hotplug /en*=x") is not enough: udev's "ifup enp0s2" would not
# find a stanza; the mapping script names one.
cat > "$R/etc/network/interfaces" <<'EOF'
source /etc/network/interfaces.d/*

allow-hotplug /en*
mapping en*
    script /usr/local/lib/devvm/ifmap

iface devvm-dhcp inet dhcp
EOF
mkdir -p "$R/usr/local/lib/devvm"
cat > "$R/usr/local/lib/devvm/ifmap" <<'EOF'
#!/bin/sh
# ifupdown mapping: a NIC with its own stanza in interfaces.d keeps it, any other gets DHCP.
if grep -qsE "^[[:space:]]*iface[[:space:]]+$1[[:space:]]" /etc/network/interfaces.d/*; then
  echo "$1"
else
  echo devvm-dhcp
fi
EOF
chmod 755 "$R/usr/local/lib/devvm/ifmap"
# network-online.target then waits for a lease (cloud-init's final stage wants it).
mkdir -p "$R/etc/systemd/system/network-online.target.wants"
ln -sf /lib/systemd/system/ifupdown-wait-online.service "$R/etc/systemd/system/network-online.target.wants/ifupdown-wait-online.service"

cat > "$R/etc/cloud/cloud.cfg.d/90-devvm.cfg" <<'EOF'
# devvm attaches a NoCloud seed (label cidata) for first setup only. No cloud metadata
# services are probed. The second entry only makes ds-identify look for the seed instead
# of trusting a lone NoCloud: with the usual [NoCloud, None], a boot without the seed
# falls back to DataSourceNone, a "new instance" that regenerates the host keys (the
# pinned one stops working) and creates a "debian" user. This way cloud-init stays
# disabled on boots without a seed (faster too), and a seed with a new instance-id
# (a clone) provisions again. ConfigDrive is local only (a disk labelled config-2).
datasource_list: [NoCloud, ConfigDrive]
# The network is the DHCP fallback above, on every boot. cloud-init's own rendering adds
# an "auto" stanza (see above) and a udev rule pinning the first boot's NIC name.
network: {config: disabled}
# The image has only the C.UTF-8 locale; anything else makes the locale module fail.
locale: C.UTF-8
# Debian's lists minus modules that cannot apply here (no GRUB with direct kernel boot,
# no snap, ubuntu or cloud-vendor agents, no keys-to-console: the host made the key);
# grub-dpkg alone cost 2.3 s of first boot.
cloud_init_modules: [migrator, seed_random, bootcmd, write-files, growpart, resizefs, disk_setup, mounts, set_hostname, update_hostname, update_etc_hosts, ca-certs, rsyslog, users-groups, ssh]
cloud_config_modules: [ssh-import-id, keyboard, locale, set-passwords, apt-pipelining, apt-configure, ntp, timezone, runcmd]
cloud_final_modules: [package-update-upgrade-install, write-files-deferred, scripts-vendor, scripts-per-once, scripts-per-boot, scripts-per-instance, scripts-user, ssh-authkey-fingerprints, install-hotplug, phone-home, final-message, power-state-change]
EOF
echo 'LANG=C.UTF-8' > "$R/etc/default/locale"

# Per-VM identity comes at first boot: hostname and host keys from cloud-init, the
# machine id from systemd (an empty file means "generate one").
echo localhost > "$R/etc/hostname"
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id" "$R"/etc/ssh/ssh_host_*
# mmdebstrap copies the build host's resolv.conf; dhclient writes the guest's own.
rm -f "$R/etc/resolv.conf"

# No host key in the image: cloud-init installs the VM's. Without a seed, make some so
# sshd can still start.
mkdir -p "$R/etc/systemd/system/ssh.service.d"
cat > "$R/etc/systemd/system/ssh.service.d/devvm-hostkeys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -A'
${sshdTest ? 'ExecStartPre=/usr/sbin/sshd -t\n' : ''}EOF

# A login prompt on the serial console even when the kernel's console= points elsewhere.
mkdir -p "$R/etc/systemd/system/getty.target.wants"
ln -sf /lib/systemd/system/serial-getty@.service "$R/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"

# The kernel boots from a copy next to the disk, so the modules on the disk must stay the
# ones built for it: an upgraded or autoremoved kernel package would leave the running
# kernel without modules (no USB storage, no new filesystems). A newer kernel comes with
# a new image.
chroot "$R" apt-mark hold linux-image-amd64 "linux-image-$(ls "$R/lib/modules")" >/dev/null

# The text consoles follow the display's size. When the host asks for a new size (the
# Display tab, devvm display --size) the virtio GPU changes its preferred mode and the
# kernel switches the screen to it, but the consoles keep the rows and columns of the
# framebuffer they booted with and draw past the new edge. On the DRM change event they
# are resized to the mode (8x16 glyphs, the kernel's font), or to the whole framebuffer
# when the mode is larger than it (the kernel then shows the framebuffer's size).
cat > "$R/etc/udev/rules.d/90-devvm-console-size.rules" <<'EOF'
ACTION=="change", SUBSYSTEM=="drm", KERNEL=="card[0-9]*", RUN+="/usr/local/lib/devvm/console-size"
EOF
cat > "$R/usr/local/lib/devvm/console-size" <<'EOF'
#!/bin/sh
read -r mode < /sys/class/drm/card0-Virtual-1/modes 2>/dev/null || exit 0
IFS=, read -r fw fh < /sys/class/graphics/fb0/virtual_size 2>/dev/null || exit 0
w=\${mode%%x*}; h=\${mode#*x}; h=\${h%%[!0-9]*}
if [ "$w" -gt "$fw" ] || [ "$h" -gt "$fh" ]; then w=$fw; h=$fh; fi
for t in /dev/tty[1-6]; do stty -F "$t" cols $((w / 8)) rows $((h / 16)) 2>/dev/null || :; done
EOF
chmod 755 "$R/usr/local/lib/devvm/console-size"

# FSTYPE because the initramfs's fsck hook probes the root device, which a chroot does
# not have, and then leaves fsck out ("fsck not present, so skipping root file system").
echo FSTYPE=ext4 > "$R/etc/initramfs-tools/conf.d/devvm-fstype"
`;
}

/**
 * The customize hook's second part: a shorter boot, each step measured (docs/boot.md
 * has the figures, systemd-analyze in the guest before and after).
 */
export const BOOT_TUNING = `
echo "devvm: tuning the boot"
# Drivers for emulated chipset parts a dev VM never uses: every module udev loads at boot
# costs time under emulation (ahci: q35's SATA controller, where devvm attaches nothing,
# probed six empty ports). Blacklisting only stops autoloading; kvm_intel/kvm_amd
# (nested virtualization) still load with modprobe.
cat > "$R/etc/modprobe.d/devvm.conf" <<'EOF'
blacklist iTCO_wdt
blacklist iTCO_vendor_support
blacklist lpc_ich
blacklist i2c_i801
blacklist pcspkr
blacklist serio_raw
blacklist kvm_intel
blacklist kvm_amd
blacklist ahci
EOF
# The NIC and the agent's channel as soon as systemd-modules-load runs, instead of when
# udev's coldplug gets to them: under load that was up to 20 s later, and sshd and the
# helper's readiness wait for both.
# qemu_fw_cfg too: devvm-firstboot looks for its seed there on every boot, and loading it
# in the same process saves that unit a modprobe on sysinit's critical path.
printf '%s\\n' virtio_net virtio_console qemu_fw_cfg > "$R/etc/modules-load.d/devvm.conf"

# Generators for what a devvm guest has none of (encrypted, integrity or verity volumes,
# hibernation, GPT partitions, offline updates, rc.local, systemd.run= on the command
# line): each is a process before any unit starts. A link to /dev/null masks one.
mkdir -p "$R/etc/systemd/system-generators"
for g in cryptsetup integritysetup veritysetup hibernate-resume gpt-auto system-update rc-local run; do
  ln -sf /dev/null "$R/etc/systemd/system-generators/systemd-$g-generator"
done

# The NIC through systemd-networkd (part of systemd) instead of ifupdown: ifupdown's
# hotplug rule ran inside the NIC's udev event, and its device unit and dhclient came
# about 4 s after udev had named the NIC; networkd takes the link as soon as udev has,
# with its own DHCP client. "auto" stanzas in interfaces.d still work through ifupdown.
# resolv.conf: QEMU's user network answers DNS at 10.0.2.3 (networkd writes none without
# systemd-resolved, which the image does not have).
echo 'source /etc/network/interfaces.d/*' > "$R/etc/network/interfaces"
# ifupdown's boot units only when interfaces.d has something for them (with nothing to
# configure, networking.service still took 4 s of a cold boot).
for u in networking ifupdown-pre; do
  mkdir -p "$R/etc/systemd/system/$u.service.d"
  printf '[Unit]\\nConditionDirectoryNotEmpty=/etc/network/interfaces.d\\n' > "$R/etc/systemd/system/$u.service.d/devvm.conf"
done
ln -sf /dev/null "$R/etc/udev/rules.d/80-ifupdown.rules"
rm -f "$R/etc/systemd/system/network-online.target.wants/ifupdown-wait-online.service"
mkdir -p "$R/etc/systemd/network"
cat > "$R/etc/systemd/network/80-devvm-dhcp.network" <<'EOF'
[Match]
Type=ether
Name=en*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
echo 'nameserver 10.0.2.3' > "$R/etc/resolv.conf"
chroot "$R" systemctl enable systemd-networkd.service systemd-networkd-wait-online.service 2>&1 | grep -v '^Created symlink' || :

# Periodic maintenance a dev VM does not need, which otherwise competes with the user for
# an emulated CPU right after boot, and modules systemd loads at boot "in case" (device
# mapper, loop, EFI pstore, DRM, configfs, FUSE: each is loaded on demand when used). Masked, not
# disabled: systemd's first-boot preset (empty machine-id) would enable disabled units again.
for u in apt-daily.timer apt-daily.service apt-daily-upgrade.timer apt-daily-upgrade.service \\
    dpkg-db-backup.timer dpkg-db-backup.service man-db.timer man-db.service \\
    e2scrub_all.timer e2scrub_all.service e2scrub_reap.service \\
    modprobe@dm_mod.service modprobe@loop.service modprobe@efi_pstore.service modprobe@drm.service \\
    modprobe@configfs.service modprobe@fuse.service; do
  ln -sf /dev/null "$R/etc/systemd/system/$u"
done

# Two units with one ordering less, as copies under /usr/local/lib/systemd/system: they win
# over /lib by name, and, unlike copies in /etc, leave "systemctl mask" working (it refuses
# a unit file in /etc; SSH off masks ssh.service). timesyncd orders itself before
# sysinit.target, so every normal unit (sshd too) waited for it to start. sshd listens on
# every address and needs no configured network, but was ordered after network.target,
# which waits for networkd's own start (3.6 s of the contended early boot); DHCP follows
# 0.4 s after that, so sshd is up by the time the guest is reachable.
L="$R/usr/local/lib/systemd/system"
mkdir -p "$L"
sed -e '/^Before=/s/ sysinit\\.target//' "$R/lib/systemd/system/systemd-timesyncd.service" > "$L/systemd-timesyncd.service"
sed -e '/^After=/s/ *network\\.target//' "$R/lib/systemd/system/ssh.service" > "$L/ssh.service"

# Processes off the early boot, each 0.3-0.5 s of an emulated CPU (a systemd binary has to
# link libsystemd-shared before it does anything):
# - sshd's host key check (a shell and an ls before every sshd start) as a condition that
#   systemd evaluates itself, in a unit of its own that makes keys only for a VM without any;
# - devvm-firstboot started only when the host attached a seed (qemu_fw_cfg is loaded by
#   modules-load, which the unit runs after);
# - kmod-static-nodes (the device nodes that load a module when opened, /dev/fuse and the
#   like) as a tmpfiles.d file made here from the image's one kernel, which
#   systemd-tmpfiles-setup-dev reads anyway;
# - the boot record in utmp written beside the rest of early boot, not before sysinit.target
#   (the copy under /usr/local/lib, as above).
printf '[Service]\\nExecStartPre=\\n' > "$R/etc/systemd/system/ssh.service.d/devvm-hostkeys.conf"
cat > "$R/etc/systemd/system/devvm-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=SSH host keys for a VM that has none
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key
After=devvm-firstboot.service cloud-init.service
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=ssh.service
EOF
mkdir -p "$R/etc/systemd/system/ssh.service.wants"
ln -sf ../devvm-ssh-hostkeys.service "$R/etc/systemd/system/ssh.service.wants/devvm-ssh-hostkeys.service"
mkdir -p "$R/etc/systemd/system/devvm-firstboot.service.d"
printf '[Unit]\\nConditionPathExists=/sys/firmware/qemu_fw_cfg/by_name/${DEVVM_SEED_FWCFG}/raw\\n' > "$R/etc/systemd/system/devvm-firstboot.service.d/devvm-seed.conf"
awk '!/^#/ && NF == 3 {
  d = $2; if (sub(/\\/[^\\/]*$/, "", d)) print "d /dev/" d " 0755 - - -"
  split($3, n, ":"); print substr(n[1], 1, 1) "! /dev/" $2 " 0600 - - - " substr(n[1], 2) ":" n[2]
}' "$R"/lib/modules/*/modules.devname > "$R/etc/tmpfiles.d/devvm-static-nodes.conf"
ln -sf /dev/null "$R/etc/systemd/system/kmod-static-nodes.service"
sed -e '/^Before=/s/sysinit\\.target *//' "$R/lib/systemd/system/systemd-update-utmp.service" > "$L/systemd-update-utmp.service"

# Every SSH login (Remote-SSH opens several) ran update-motd.d (run-parts, a shell, uname)
# and looked for mail: 0.14 s of a 0.8 s "ssh true" under emulation. /etc/motd still shows.
sed -i -e '/^session.*pam_motd\\.so.*motd\\.dynamic/d' -e '/^session.*pam_mail\\.so/d' "$R/etc/pam.d/sshd"

# qemu-ga logs every command at info level, and the helper reads /proc/net/tcp and tcp6
# through it every second for port forwarding: 348 journal lines a minute, written into the
# VM's overlay. Its warnings and errors still reach the journal.
mkdir -p "$R/etc/systemd/system/qemu-guest-agent.service.d"
printf '[Service]\\nLogLevelMax=warning\\n' > "$R/etc/systemd/system/qemu-guest-agent.service.d/devvm-quiet.conf"

# What systemd would do on the first boot because /usr is newer than /etc and /var
# (ConditionNeedsUpdate: the hwdb and the linker cache), done once here instead.
chroot "$R" systemd-hwdb update
chroot "$R" ldconfig
touch -r "$R/usr" "$R/etc/.updated" "$R/var/.updated"

# The initramfs only has to find ext4 on a virtio disk. Debian's MODULES=most made it
# 30 MB, 2-4 s of unpacking per boot under emulation.
echo MODULES=list > "$R/etc/initramfs-tools/conf.d/devvm"
printf '%s\\n' virtio_pci virtio_blk ext4 >> "$R/etc/initramfs-tools/modules"
${DEVVM_INITRD_HOOK}`;

/** guestConfig without sshd's configuration test (one sshd start less on every boot, part of the tuning), then BOOT_TUNING. */
export const BASE_CONFIGURE = guestConfig(false) + BOOT_TUNING;

/** Runs update-initramfs once, after everything else (see ESSENTIAL_HOOK). */
export const INITRAMFS = `echo "devvm: generating the initramfs"
rm -f "$R/usr/sbin/update-initramfs"
chroot "$R" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
chroot "$R" update-initramfs -c -k all
`;

/** The plain debian-12 customize hook: the tree at $1 configured as a devvm guest. */
export const CUSTOMIZE_HOOK = BASE_CONFIGURE + FIRSTBOOT_HOOK + INITRAMFS;

/**
 * The bench's baseline, debian-12-stock: the same guest with Debian's own boot (its
 * initramfs with MODULES=most, its units and timers, sshd -t) and none of BOOT_TUNING.
 */
export const STOCK_CUSTOMIZE_HOOK = guestConfig(true) + FIRSTBOOT_HOOK + INITRAMFS;
