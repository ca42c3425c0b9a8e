/**
 * The image recipes `devvm image build` knows, as data: the lean debian-12 every VM can
 * use, debian-12-desktop, the same guest plus a small X session (see desktop.ts), and
 * debian-12-stock, the bench's baseline with Debian's own boot.
 */
import { DESKTOP_HOOK, DESKTOP_PACKAGES } from './desktop';
import { FIRSTBOOT_HOOK } from './firstboot';
import { BASE_CONFIGURE, CUSTOMIZE_HOOK, ESSENTIAL_HOOK, INITRAMFS, STOCK_CUSTOMIZE_HOOK } from './hooks';
import { type DebianRecipe, GiB } from './recipe';

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
  kernel: 'pvh',
  initrd: 'devvm',
};

/**
 * debian-12 plus the graphical session. Only the packages and the customize hook differ;
 * the desktop part runs before the one initramfs generation. debian-12 itself is
 * untouched (its hash is pinned by a unit test).
 */
export const DEBIAN_12_DESKTOP_RECIPE: DebianRecipe = {
  ...DEBIAN_12_RECIPE,
  name: 'debian-12-desktop',
  packages: [...DEBIAN_12_RECIPE.packages, ...DESKTOP_PACKAGES],
  customizeHook: BASE_CONFIGURE + FIRSTBOOT_HOOK + DESKTOP_HOOK + INITRAMFS,
  mkfsOptions: [...DEBIAN_12_RECIPE.mkfsOptions],
};

/**
 * The bench's baseline for coldBootRatioVsStock: debian-12's packages and guest setup with
 * Debian's own boot (none of BOOT_TUNING). Buildable like the others; not offered in the UI.
 */
export const DEBIAN_12_STOCK_RECIPE: DebianRecipe = {
  ...DEBIAN_12_RECIPE,
  name: 'debian-12-stock',
  customizeHook: STOCK_CUSTOMIZE_HOOK,
  // Debian's bzImage, decompressing itself at every boot.
  kernel: undefined,
  // Debian's initramfs (initramfs-tools, with udev).
  initrd: undefined,
  mkfsOptions: [...DEBIAN_12_RECIPE.mkfsOptions],
};

/** By name, in the order `image build` lists them. */
export const RECIPES: readonly DebianRecipe[] = [DEBIAN_12_RECIPE, DEBIAN_12_DESKTOP_RECIPE, DEBIAN_12_STOCK_RECIPE];

export const RECIPE_NAMES: readonly string[] = RECIPES.map((r) => r.name);

export function recipeByName(name: string): DebianRecipe | undefined {
  return RECIPES.find((r) => r.name === name);
}
