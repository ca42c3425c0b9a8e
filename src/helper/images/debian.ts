/**
 * The Debian 12 base image, built here from Debian packages with mmdebstrap: an ext4
 * filesystem directly on /dev/vda (no partition table, no bootloader) plus the kernel and
 * initrd for QEMU's direct kernel boot. Cached under `<cacheRoot>/images/debian-12-<hash>/`
 * where the hash covers everything that shapes the image (the recipe below), built in a
 * private temp dir and renamed into place, so a directory with that name is always complete.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statfsSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { asDevvmError, DevvmError } from '../../shared/errors';
import { log } from '../log';
import { pidAlive, ProcessError, run } from '../proc';

export interface BuiltImage {
  disk: string;
  kernel: string;
  initrd: string;
  recipeHash: string;
  dir: string;
}

export interface DebianRecipe {
  /** Bump when the code that interprets the recipe changes in a way that changes the image. */
  formatVersion: number;
  name: string;
  suite: string;
  /** `<suite>-updates` and `<suite>-security` are added when the mirror configuration offers them. */
  updates: boolean;
  security: boolean;
  variant: string;
  components: string[];
  packages: string[];
  /** mmdebstrap --essential-hook: runs after the essential packages, before the rest. */
  essentialHook: string;
  /** mmdebstrap --customize-hook: runs on the finished tree, `$1` is its root. */
  customizeHook: string;
  diskSizeBytes: number;
  mkfsOptions: string[];
}

const GiB = 1024 ** 3;

// Keep update-initramfs from running for the kernel's postinst and again for every
// trigger while packages install (about 27 s each under mmdebstrap); the customize hook
// runs it once at the end.
const ESSENTIAL_HOOK = `set -eu
chroot "$1" dpkg-divert --quiet --local --rename --divert /usr/sbin/update-initramfs.devvm --add /usr/sbin/update-initramfs
ln -s /bin/true "$1/usr/sbin/update-initramfs"
`;

/*
 * The customize hook. It runs as (namespace) root with the tree at $1, in both build modes.
 * Lines starting with "devvm: " are progress messages (see MmdebstrapProgress).
 */
const CUSTOMIZE_HOOK = `set -eu
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
ExecStartPre=/usr/sbin/sshd -t
EOF

# A login prompt on the serial console even when the kernel's console= points elsewhere.
mkdir -p "$R/etc/systemd/system/getty.target.wants"
ln -sf /lib/systemd/system/serial-getty@.service "$R/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"

# Periodic maintenance a dev VM does not need, which otherwise competes with the user for
# an emulated CPU right after boot. Masked, not disabled: systemd's first-boot preset
# (empty machine-id) would enable disabled units again.
# Drivers for emulated chipset parts a dev VM never uses: every module udev loads at boot
# costs time under emulation. Blacklisting only stops autoloading; kvm_intel/kvm_amd
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
EOF

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

for u in apt-daily.timer apt-daily.service apt-daily-upgrade.timer apt-daily-upgrade.service \\
    dpkg-db-backup.timer dpkg-db-backup.service man-db.timer man-db.service \\
    e2scrub_all.timer e2scrub_all.service e2scrub_reap.service; do
  ln -sf /dev/null "$R/etc/systemd/system/$u"
done

# The kernel boots from a copy next to the disk, so the modules on the disk must stay the
# ones built for it: an upgraded or autoremoved kernel package would leave the running
# kernel without modules (no USB storage, no new filesystems). A newer kernel comes with
# a new image.
chroot "$R" apt-mark hold linux-image-amd64 "linux-image-$(ls "$R/lib/modules")" >/dev/null

# The initramfs only has to find ext4 on a virtio disk. Debian's MODULES=most made it
# 30 MB, 2-4 s of unpacking per boot under emulation; the list keeps virtio-scsi, NVMe
# and AHCI too. FSTYPE because the fsck hook probes the root device, which a chroot does
# not have, and then leaves fsck out ("fsck not present, so skipping root file system").
cat > "$R/etc/initramfs-tools/conf.d/devvm" <<'EOF'
MODULES=list
FSTYPE=ext4
EOF
printf '%s\\n' virtio_pci virtio_blk virtio_scsi sd_mod nvme ahci ext4 >> "$R/etc/initramfs-tools/modules"

echo "devvm: generating the initramfs"
rm -f "$R/usr/sbin/update-initramfs"
chroot "$R" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
chroot "$R" update-initramfs -c -k all
`;

export const DEBIAN_12_RECIPE: DebianRecipe = {
  formatVersion: 1,
  name: 'debian-12',
  suite: 'bookworm',
  updates: true,
  security: true,
  variant: 'apt',
  components: ['main'],
  packages: [
    // MACHINE.md's hand-checked set
    'systemd-sysv', 'udev', 'openssh-server', 'cloud-init', 'linux-image-amd64', 'ifupdown', 'isc-dhcp-client',
    'sudo', 'netbase', 'iproute2', 'qemu-guest-agent', 'dbus',
    // fsck.ext4 for boot and resize2fs for cloud-init's resizefs (a VM's disk is larger than the base's 4 GiB)
    'e2fsprogs',
    // zstd-compressed initramfs (initramfs-tools falls back to gzip without it): faster to unpack under emulation
    'zstd',
    // logind sessions for SSH logins (XDG_RUNTIME_DIR, user services)
    'libpam-systemd',
    // Remote-SSH downloads the VS Code server inside the guest and uses ps
    'curl', 'ca-certificates', 'procps',
    // corrects the clock after a VM resumes from a RAM state file (at its next poll)
    'systemd-timesyncd',
  ],
  essentialHook: ESSENTIAL_HOOK,
  customizeHook: CUSTOMIZE_HOOK,
  diskSizeBytes: 4 * GiB,
  // Inode tables and journal written now, not by ext4lazyinit on every VM's first boot
  // (which would write zeros into each overlay on an emulated CPU).
  mkfsOptions: ['-E', 'lazy_itable_init=0,lazy_journal_init=0'],
};

// ---- recipe hash -------------------------------------------------------------

/** JSON with object keys sorted at every level, so equal recipes hash equally. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  if (typeof value === 'number' && !Number.isFinite(value)) throw new DevvmError('internal', 'recipe holds a non-finite number');
  return JSON.stringify(value);
}

export function recipeHash(recipe: DebianRecipe): string {
  return createHash('sha256').update(canonicalJson(recipe)).digest('hex').slice(0, 16);
}

// ---- mirrors -------------------------------------------------------------------

export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
}

export interface AptFile {
  /** File name; `.sources` means deb822 format, anything else one-line format. */
  name: string;
  text: string;
}

/** Enabled binary (`deb`) entries of apt source files, in file order. */
export function parseAptSources(files: readonly AptFile[]): AptSource[] {
  const out: AptSource[] = [];
  for (const f of files) {
    if (f.name.endsWith('.sources')) out.push(...parseDeb822(f.text));
    else out.push(...parseOneLine(f.text));
  }
  return out;
}

function parseOneLine(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    // deb [ key=value ... ] uri suite [component...]
    const m = /^deb\s+(?:\[[^\]]*\]\s*)?(\S+)\s+(\S+)(.*)$/.exec(line);
    if (!m) continue;
    out.push({ uri: m[1], suites: [m[2]], components: m[3].trim().split(/\s+/).filter(Boolean) });
  }
  return out;
}

function parseDeb822(text: string): AptSource[] {
  const out: AptSource[] = [];
  // Paragraphs are separated by blank lines; comment lines are ignored entirely and
  // lines starting with white space continue the previous field (e.g. an inline key).
  for (const para of text.split(/\n[ \t]*\n/)) {
    const fields = new Map<string, string>();
    let last: string | null = null;
    for (const line of para.split('\n')) {
      if (line.startsWith('#')) continue;
      if (/^[ \t]/.test(line)) {
        if (last) fields.set(last, `${fields.get(last)} ${line.trim()}`);
        continue;
      }
      const m = /^([A-Za-z0-9-]+):(.*)$/.exec(line);
      if (!m) continue;
      last = m[1].toLowerCase();
      fields.set(last, m[2].trim());
    }
    const words = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
    if (!words('types').includes('deb')) continue;
    if (/^(no|false|0)$/i.test(fields.get('enabled') ?? 'yes')) continue;
    for (const uri of words('uris')) out.push({ uri, suites: words('suites'), components: words('components') });
  }
  return out;
}

const DEBIAN_SUITES = /^(buster|bullseye|bookworm|trixie|forky|duke|sid|experimental|rc-buggy|(old)*stable|testing|unstable)([-/].*)?$/;
const isSecurity = (suite: string) => /-security$|\/updates$/.test(suite);
const usableUri = (uri: string) => /^https?:\/\/\S+$/.test(uri);

export const DEFAULT_DEBIAN_MIRROR = 'http://deb.debian.org/debian';
export const DEFAULT_DEBIAN_SECURITY = 'http://deb.debian.org/debian-security';

export interface DebianSources {
  /** One-line apt entries for mmdebstrap, e.g. `deb http://deb.debian.org/debian bookworm main`. */
  entries: string[];
  origin: 'env' | 'host' | 'default';
}

/**
 * Which mirrors to build from: DEVVM_DEBIAN_MIRROR alone when set (the user chose it; only
 * the release suite, since a private mirror may carry nothing else); else the host's first
 * Debian mirror that has `main` (a Debian suite name tells it apart from third-party
 * repositories and Ubuntu), plus `-updates` when the host uses them from that mirror and
 * the host's security mirror; else deb.debian.org with updates and security.
 */
export function debianSources(recipe: Pick<DebianRecipe, 'suite' | 'components' | 'updates' | 'security'>, hostFiles: readonly AptFile[], envMirror?: string): DebianSources {
  const comps = recipe.components.join(' ');
  const line = (uri: string, suite: string) => `deb ${uri.replace(/\/+$/, '')} ${suite} ${comps}`;
  if (envMirror !== undefined && envMirror.trim() !== '') {
    const uri = envMirror.trim();
    if (!/^[a-z][a-z0-9+.-]*:\S+$/i.test(uri)) {
      throw new DevvmError('invalid-argument', `DEVVM_DEBIAN_MIRROR is not a URL: ${JSON.stringify(uri).slice(0, 100)}`, 'set it like http://deb.debian.org/debian');
    }
    return { entries: [line(uri, recipe.suite)], origin: 'env' };
  }
  const sources = parseAptSources(hostFiles).filter((s) => usableUri(s.uri) && s.components.includes('main'));
  const main = sources.find((s) => s.suites.some((x) => DEBIAN_SUITES.test(x) && !isSecurity(x)));
  if (!main) {
    const entries = [line(DEFAULT_DEBIAN_MIRROR, recipe.suite)];
    if (recipe.updates) entries.push(line(DEFAULT_DEBIAN_MIRROR, `${recipe.suite}-updates`));
    if (recipe.security) entries.push(line(DEFAULT_DEBIAN_SECURITY, `${recipe.suite}-security`));
    return { entries, origin: 'default' };
  }
  const entries = [line(main.uri, recipe.suite)];
  const sameUri = (s: AptSource) => s.uri.replace(/\/+$/, '') === main.uri.replace(/\/+$/, '');
  if (recipe.updates && sources.some((s) => sameUri(s) && s.suites.some((x) => DEBIAN_SUITES.test(x) && x.endsWith('-updates')))) {
    entries.push(line(main.uri, `${recipe.suite}-updates`));
  }
  const security = sources.find((s) => s.suites.some((x) => DEBIAN_SUITES.test(x) && isSecurity(x)));
  if (recipe.security && security) entries.push(line(security.uri, `${recipe.suite}-security`));
  return { entries, origin: 'host' };
}

/** The host's apt source files in the order apt reads them. */
function hostAptFiles(): AptFile[] {
  const files: AptFile[] = [];
  const read = (file: string) => {
    try {
      files.push({ name: path.basename(file), text: readFileSync(file, 'utf8') });
    } catch {
      // unreadable or absent: not a Debian host, or a restricted one
    }
  };
  read('/etc/apt/sources.list');
  let names: string[] = [];
  try {
    names = readdirSync('/etc/apt/sources.list.d').sort();
  } catch {
    // no such directory
  }
  for (const n of names) if (/\.(list|sources)$/.test(n)) read(path.join('/etc/apt/sources.list.d', n));
  return files;
}

// ---- progress -------------------------------------------------------------------

type ProgressFn = (message: string, fraction?: number) => void;

/**
 * Turns mmdebstrap --verbose output into (message, fraction) updates. Stages come from its
 * "I: ..." lines, positions within a stage from apt/dpkg per-package lines counted against
 * apt's "N newly installed". Fractions 0..1 of the whole mmdebstrap run.
 */
export class MmdebstrapProgress {
  private stage: { from: number; to: number; perPackage: number } = { from: 0, to: 0.02, perPackage: 0 };
  private total = 0;
  private done = 0;
  private partial = '';
  private lastFraction = -1;
  private lastMessage = '';

  constructor(private readonly report: (message: string, fraction: number) => void) {}

  // [marker, start, end, per-package lines expected in the stage (0: none), message];
  // the spans follow a measured 77 s run (essential 10-29 s, the rest 29-67 s).
  private static readonly STAGES: Array<[RegExp, number, number, number, string]> = [
    [/^I: running apt-get update/, 0.0, 0.03, 0, 'downloading and installing packages'],
    [/^I: downloading packages/, 0.03, 0.07, 1, 'downloading and installing packages'],
    [/^I: extracting archives/, 0.07, 0.13, 0, 'downloading and installing packages'],
    [/^I: installing essential packages/, 0.13, 0.37, 2, 'downloading and installing packages'],
    [/^I: installing remaining packages/, 0.37, 0.86, 3, 'downloading and installing packages'],
    [/^devvm: configuring the image/, 0.86, 0.87, 0, 'configuring the image'],
    [/^devvm: generating the initramfs/, 0.87, 0.97, 0, 'generating the initramfs'],
    [/^I: cleaning package lists/, 0.97, 0.99, 0, 'cleaning up'],
    [/^I: success/, 1, 1, 0, 'downloading and installing packages'],
  ];

  feed(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop() ?? '';
    for (const l of lines) this.line(l.trim());
  }

  private line(l: string): void {
    const stage = MmdebstrapProgress.STAGES.find(([re]) => re.test(l));
    if (stage) {
      // The package count stays: the essential stage installs what the download stage counted.
      this.stage = { from: stage[1], to: stage[2], perPackage: stage[3] };
      this.done = 0;
      return this.emit(stage[4], stage[1]);
    }
    const n = /^\d+ upgraded, (\d+) newly installed/.exec(l);
    if (n) {
      this.total = Number(n[1]);
      return;
    }
    if (!this.stage.perPackage || !this.total || !/^(Get:\d+ |Unpacking |Setting up )/.test(l)) return;
    this.done++;
    const f = Math.min(1, this.done / (this.total * this.stage.perPackage));
    this.emit(this.lastMessage, this.stage.from + (this.stage.to - this.stage.from) * f);
  }

  private emit(message: string, fraction: number): void {
    // Only visible changes: a new message or at least half a percent.
    if (message === this.lastMessage && fraction - this.lastFraction < 0.005) return;
    this.lastMessage = message;
    this.lastFraction = fraction;
    this.report(message, fraction);
  }
}

// ---- build ------------------------------------------------------------------------

/** Share of the whole build per step, from measured runs (mmdebstrap dominates). */
const SPAN = { mmdebstrap: [0, 0.88], mkfs: [0.88, 0.95], convert: [0.95, 0.995] } as const;

const FILES = ['disk.qcow2', 'vmlinuz', 'initrd.img', 'recipe.json'] as const;

function isComplete(dir: string, hash: string): boolean {
  if (!FILES.every((f) => existsSync(path.join(dir, f)))) return false;
  try {
    return (JSON.parse(readFileSync(path.join(dir, 'recipe.json'), 'utf8')) as { hash?: string }).hash === hash;
  } catch {
    return false;
  }
}

function result(dir: string, hash: string): BuiltImage {
  return { disk: path.join(dir, 'disk.qcow2'), kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.img'), recipeHash: hash, dir };
}

/** Mount points at or below `dir` (from /proc/self/mountinfo; none where that is absent). */
function mountsUnder(dir: string): string[] {
  let info = '';
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return info
    .split('\n')
    .map((l) => unescape(l.split(' ')[4] ?? ''))
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/**
 * rm -rf that never crosses into a mount point: a build killed at the wrong moment could
 * leave the host's /dev, /proc or /sys mounted inside the tree, and deleting through those
 * would damage the host. Such a tree is left in place and reported instead.
 */
async function removeTree(dir: string, unprivilegedTree = false): Promise<void> {
  if (!existsSync(dir)) return;
  if (mountsUnder(dir).length) {
    await run('umount', ['--recursive', '--lazy', dir]).catch(() => undefined);
    if (mountsUnder(dir).length) {
      log.warn(`not removing ${dir}: something is still mounted inside it`);
      return;
    }
  }
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch (e) {
    // A tree unpacked in a user namespace holds files owned by subordinate ids that only
    // that namespace's root may delete.
    if (!unprivilegedTree) throw e;
    await run('unshare', ['--user', '--map-auto', '--map-root-user', 'rm', '-rf', '--one-file-system', dir]);
  }
}

/**
 * Removes temp dirs of builds whose process is gone (killed helper, power loss). Only
 * those untouched for an hour: a build in another PID namespace (a container sharing the
 * cache) has a pid that looks dead from here.
 */
async function removeStaleBuilds(imagesDir: string): Promise<void> {
  let names: string[] = [];
  try {
    names = readdirSync(imagesDir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^\.debian-12-[0-9a-f]+\.tmp-(\d+)-[0-9a-f]+(\.old)?$/.exec(n);
    let age = 0;
    try {
      age = Date.now() - statSync(path.join(imagesDir, n)).mtimeMs;
    } catch {
      continue;
    }
    if (m && !pidAlive(Number(m[1])) && age > 3600_000) {
      log.info(`removing the leftovers of an interrupted image build: ${n}`);
      await removeTree(path.join(imagesDir, n), process.getuid?.() !== 0).catch((e) => log.warn(`cannot remove ${n}: ${(e as Error).message}`));
    }
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(t);
      reject(new DevvmError('invalid-state', 'image build was cancelled'));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/**
 * A lock file (pid inside) so two builds of the same recipe do not both spend minutes on
 * it: the second waits for the first and then finds its result. Correctness does not depend
 * on it (unique temp dirs, rename that tolerates losing); a lock whose process is gone is
 * taken over.
 */
async function acquireLock(lock: string, onWait: (pid: number) => void, signal?: AbortSignal): Promise<() => void> {
  let announced = false;
  for (;;) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
      return () => {
        try {
          if (readFileSync(lock, 'utf8').trim() === String(process.pid)) unlinkSync(lock);
        } catch {
          // already gone
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let owner = 0;
    try {
      owner = Number(readFileSync(lock, 'utf8').trim()) || 0;
    } catch {
      continue; // released between our two calls
    }
    if (!owner || owner === process.pid || !pidAlive(owner)) {
      try {
        unlinkSync(lock);
      } catch {
        // someone else took it over first
      }
      continue;
    }
    if (!announced) onWait(owner);
    announced = true;
    await sleep(1000, signal);
  }
}

function e2fsprogsVersion(text: string): number[] {
  const m = /(?:mke2fs|mkfs\.ext4) (\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : [0, 0, 0];
}

const atLeast = (v: number[], want: number[]) => {
  for (let i = 0; i < want.length; i++) if ((v[i] ?? 0) !== want[i]) return (v[i] ?? 0) > want[i];
  return true;
};

/**
 * Builds the Debian 12 image (or returns the cached one at once).
 *
 * As root: mmdebstrap writes the tree to a directory (in its unshare mode, which as root
 * only unshares the mount namespace, so a killed build cannot leave /proc, /sys or /dev
 * bind mounts behind in the temp dir), then `mkfs.ext4 -d` turns it into the filesystem.
 *
 * Without root: mmdebstrap's unshare mode (user namespaces; needs /etc/subuid and
 * /etc/subgid entries, as adduser makes) writes a tarball whose entries carry the right
 * owners. e2fsprogs >= 1.47.1 makes the filesystem straight from the tarball. Older
 * e2fsprogs: the tarball is unpacked and `mkfs.ext4 -d` run inside
 * `unshare --user --map-auto --map-root-user`, where the caller is uid 0 and the
 * subordinate ids stand for the image's other users, so the filesystem records the owners
 * the tarball had, and the files it writes belong to the caller.
 */
export async function buildDebian12(opts: { cacheRoot: string; signal?: AbortSignal; onProgress?: (message: string, fraction?: number) => void }): Promise<BuiltImage> {
  const recipe = DEBIAN_12_RECIPE;
  const hash = recipeHash(recipe);
  const imagesDir = path.join(opts.cacheRoot, 'images');
  const finalDir = path.join(imagesDir, `${recipe.name}-${hash}`);
  if (isComplete(finalDir, hash)) return result(finalDir, hash);

  const progress: ProgressFn = (m, f) => opts.onProgress?.(m, f);
  mkdirSync(imagesDir, { recursive: true, mode: 0o755 });
  const release = await acquireLock(`${finalDir}.lock`, (pid) => progress(`waiting for another build of this image (process ${pid})`), opts.signal);
  try {
    if (isComplete(finalDir, hash)) return result(finalDir, hash);
    await removeStaleBuilds(imagesDir);
    return await build(recipe, hash, imagesDir, finalDir, progress, opts.signal);
  } finally {
    release();
  }
}

async function build(recipe: DebianRecipe, hash: string, imagesDir: string, finalDir: string, progress: ProgressFn, signal?: AbortSignal): Promise<BuiltImage> {
  const started = performance.now();
  const asRoot = process.getuid?.() === 0;
  try {
    // tree (~0.8 GB) + raw filesystem (~0.8 GB allocated) + qcow2 (~0.8 GB)
    const free = statfsSync(imagesDir);
    if (free.bavail * free.bsize < 3 * GiB) {
      throw new DevvmError('io', `not enough free space in ${imagesDir} to build the ${recipe.name} image`, 'it needs about 3 GiB while building, 0.8 GiB after');
    }
  } catch (e) {
    if (e instanceof DevvmError) throw e; // statfs unsupported: carry on
  }

  const sources = debianSources(recipe, hostAptFiles(), process.env.DEVVM_DEBIAN_MIRROR);
  const tmp = path.join(imagesDir, `.${recipe.name}-${hash}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(tmp, { mode: 0o755 });
  const tree = path.join(tmp, 'root');
  const tarball = path.join(tmp, 'rootfs.tar');
  const raw = path.join(tmp, 'disk.raw');
  let unprivilegedTree = false;
  log.info(`building ${recipe.name} (${hash}) in ${tmp} ${asRoot ? 'as root' : 'without root'}; sources (${sources.origin}): ${sources.entries.join(' | ')}`);
  try {
    // 1. packages, customization, kernel and initrd
    const [m0, m1] = SPAN.mmdebstrap;
    const mm = new MmdebstrapProgress((msg, f) => progress(msg, m0 + (m1 - m0) * f));
    progress('downloading and installing packages', 0);
    const t0 = performance.now();
    // Registered before run() registers its own, so it sees the process tree intact.
    const killTree = () => killProcessTree(tmp);
    signal?.addEventListener('abort', killTree, { once: true });
    try {
      await run(
        'mmdebstrap',
        [
          '--verbose',
          '--mode=unshare',
          `--variant=${recipe.variant}`,
          `--components=${recipe.components.join(',')}`,
          `--include=${recipe.packages.join(',')}`,
          `--essential-hook=${recipe.essentialHook}`,
          `--customize-hook=${recipe.customizeHook}`,
          // special hooks run outside the chroot as the caller: they can write into tmp in both modes
          `--customize-hook=download /vmlinuz ${shq(path.join(tmp, 'vmlinuz'))}`,
          `--customize-hook=download /initrd.img ${shq(path.join(tmp, 'initrd.img'))}`,
          recipe.suite,
          asRoot ? tree : tarball,
          // Mirrors are always explicit: without one, mmdebstrap reads sources from stdin.
          ...sources.entries,
        ],
        { signal, env: sbinPath(), onOutput: (c) => mm.feed(c) },
      );
    } catch (e) {
      throw explainMmdebstrap(e, asRoot);
    } finally {
      signal?.removeEventListener('abort', killTree);
    }
    const mmSeconds = (performance.now() - t0) / 1000;

    // 2. the filesystem
    progress('making filesystem', SPAN.mkfs[0]);
    const mkfs = ['-q', '-t', 'ext4', ...recipe.mkfsOptions];
    const size = String(recipe.diskSizeBytes / 1024);
    if (asRoot) {
      await run(sbin('mkfs.ext4'), [...mkfs, '-d', tree, raw, `${size}k`], { signal });
      await removeTree(tree);
    } else {
      const version = e2fsprogsVersion((await run(sbin('mkfs.ext4'), ['-V'], { signal }).catch(() => ({ stdout: '', stderr: '' }))).stderr);
      if (atLeast(version, [1, 47, 1])) {
        await run(sbin('mkfs.ext4'), [...mkfs, '-d', tarball, raw, `${size}k`], { signal });
      } else {
        const ns = ['--user', '--map-auto', '--map-root-user'];
        mkdirSync(tree);
        unprivilegedTree = true;
        // Device nodes cannot be made in a user namespace; the guest's /dev is a devtmpfs anyway.
        await run('unshare', [...ns, 'tar', '-C', tree, '--numeric-owner', '--xattrs', '--xattrs-include=*', '--exclude=./dev/*', '-xpf', tarball], { signal });
        await run('unshare', [...ns, sbin('mkfs.ext4'), ...mkfs, '-d', tree, raw, `${size}k`], { signal });
        await removeTree(tree, true);
      }
      rmSync(tarball, { force: true });
    }

    // 3. qcow2 (uncompressed: compressed clusters are slower to read under every VM)
    progress('converting to qcow2', SPAN.convert[0]);
    const disk = path.join(tmp, 'disk.qcow2');
    await run('qemu-img', ['convert', '-O', 'qcow2', raw, disk], { signal });
    rmSync(raw, { force: true });
    // The base is shared by every VM's overlay: it must never change.
    chmodSync(disk, 0o444);

    const seconds = (performance.now() - started) / 1000;
    writeFileSync(
      path.join(tmp, 'recipe.json'),
      `${JSON.stringify({ hash, recipe, sources: sources.entries, builtAt: new Date().toISOString(), buildSeconds: Math.round(seconds), mmdebstrapSeconds: Math.round(mmSeconds) }, null, 2)}\n`,
    );

    // 4. publish atomically; a concurrent build that got there first wins
    try {
      renameSync(tmp, finalDir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && isComplete(finalDir, hash)) {
        await removeTree(tmp);
        return result(finalDir, hash);
      }
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        // an incomplete directory under the final name (damaged by hand): replace it
        const aside = `${tmp}.old`;
        renameSync(finalDir, aside);
        renameSync(tmp, finalDir);
        await removeTree(aside);
      } else {
        throw e;
      }
    }
    log.info(`built ${recipe.name} (${hash}) in ${Math.round(seconds)} s (mmdebstrap ${Math.round(mmSeconds)} s)`);
    progress('image ready', 1);
    return result(finalDir, hash);
  } catch (e) {
    await removeTree(tmp, unprivilegedTree).catch((err) => log.warn(`cannot remove ${tmp}: ${(err as Error).message}`));
    if (signal?.aborted) throw new DevvmError('invalid-state', 'image build was cancelled');
    throw asDevvmError(e);
  }
}

/**
 * Cancelling mmdebstrap: killing the process run() started is not enough. In unshare mode
 * it waits for a child in new namespaces with SIGTERM ignored, and that child (and the
 * apt, dpkg and maintainer scripts under it) carries on for minutes, holding the output
 * pipes open. So the whole tree under our mmdebstrap (found by its unique temp dir in
 * its arguments) is killed; its mount namespace goes with it. Linux only, like mmdebstrap.
 */
function killProcessTree(marker: string): void {
  const children = new Map<number, number[]>();
  const ours: number[] = [];
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return;
  }
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const pid = Number(p);
      children.set(ppid, [...(children.get(ppid) ?? []), pid]);
      if (ppid === process.pid && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker)) ours.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  const all: number[] = [];
  const queue = [...ours];
  while (queue.length) {
    const pid = queue.shift()!;
    all.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  for (const pid of all) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (all.length) log.info(`cancelled the image build: killed ${all.length} processes`);
}

/** Single-quoted for mmdebstrap's special hooks, which it splits like a shell. */
const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** PATH with the sbin directories, which a non-root user's PATH often lacks (mkfs.ext4, chroot). */
function sbinPath(): NodeJS.ProcessEnv {
  const dirs = (process.env.PATH ?? '/usr/bin:/bin').split(':');
  for (const d of ['/usr/sbin', '/sbin']) if (!dirs.includes(d)) dirs.push(d);
  return { ...process.env, PATH: dirs.join(':') };
}

/** Full path of an sbin tool when PATH lacks it (spawn looks commands up in the caller's PATH). */
function sbin(cmd: string): string {
  for (const d of (sbinPath().PATH ?? '').split(':')) if (d && existsSync(path.join(d, cmd))) return path.join(d, cmd);
  return cmd;
}

function explainMmdebstrap(e: unknown, asRoot: boolean): unknown {
  if (!(e instanceof ProcessError)) return e;
  const err = e.stderr;
  if (!asRoot && /subuid|subgid|newuidmap|unshare|user namespace/i.test(err)) {
    return new DevvmError('missing-dependency', 'mmdebstrap cannot create a user namespace to build the image without root', 'add subordinate ids for your user (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER), install uidmap, or build as root');
  }
  if (/Failed to fetch|Could not resolve|Temporary failure resolving|Unable to connect|404\s+Not Found/i.test(err)) {
    return new DevvmError('io', `downloading Debian packages failed: ${e.message.slice(0, 300)}`, 'check the network, or set DEVVM_DEBIAN_MIRROR to a reachable Debian mirror');
  }
  return e;
}
