/**
 * Permission on a host USB device node (/dev/bus/usb/BBB/DDD, root-owned 0664 by
 * default): opening it read-write for QEMU, and the udev rule that grants it.
 */
import { openSync } from 'node:fs';
import { DevvmError } from '../../shared/errors';
import type { HostUsbDevice } from '../../shared/types';

export const UDEV_RULES_FILE = '/etc/udev/rules.d/70-devvm-usb.rules';

export interface UdevFix {
  /** One line for UDEV_RULES_FILE. */
  rule: string;
  file: string;
  /** Shell lines for the user to run (printed, never executed here). */
  commands: string[];
  /** The rule only helps members of the group. */
  note: string;
}

/** The rule matching this vendor:product, granting GROUP read-write. */
export function udevRuleFor(device: Pick<HostUsbDevice, 'vendorId' | 'productId'>, group = 'plugdev'): UdevFix {
  const { vendorId, productId } = device;
  // Validated so the printed rule and commands cannot carry anything but these tokens.
  if (!/^[0-9a-f]{4}$/.test(vendorId) || !/^[0-9a-f]{4}$/.test(productId)) {
    throw new DevvmError('invalid-argument', `bad USB id ${vendorId}:${productId} (4 lowercase hex digits each)`);
  }
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(group)) throw new DevvmError('invalid-argument', `bad group name "${group}"`);
  const rule = `SUBSYSTEM=="usb", ATTR{idVendor}=="${vendorId}", ATTR{idProduct}=="${productId}", MODE="0660", GROUP="${group}"`;
  return {
    rule,
    file: UDEV_RULES_FILE,
    commands: [
      `echo '${rule}' | sudo tee -a ${UDEV_RULES_FILE}`,
      'sudo udevadm control --reload-rules',
      `sudo udevadm trigger --subsystem-match=usb --attr-match=idVendor=${vendorId} --attr-match=idProduct=${productId}`,
    ],
    note: `the user running devvm must be in the group "${group}" (sudo usermod -aG ${group} "$USER", then log in again)`,
  };
}

/**
 * Opens the device node read-write (what QEMU's usb-host needs) and returns the fd; the
 * helper passes it to QEMU, so QEMU itself needs no access to /dev. A refusal names the
 * udev rule that fixes it; a missing node says the device is gone.
 */
export function openUsbNode(dev: HostUsbDevice): number {
  try {
    return openSync(dev.devnode, 'r+');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      const fix = udevRuleFor(dev);
      throw new DevvmError('io', `no permission to open ${dev.devnode} (${dev.vendorId}:${dev.productId})`, `add this rule to ${fix.file}: ${fix.rule}, then reload udev and replug`);
    }
    if (code === 'ENOENT') throw new DevvmError('not-found', `USB device ${dev.id} has no device node ${dev.devnode}`, 'it was unplugged; see "devvm usb list"');
    throw new DevvmError('io', `cannot open ${dev.devnode}: ${code ?? (e as Error).message}`);
  }
}
