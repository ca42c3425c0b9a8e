import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import { canOpen, udevRuleFor, UDEV_RULES_FILE } from '../../src/helper/usb/access';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'devvm-usb-access-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('udevRuleFor: the exact rule, its file, and the commands that apply it', () => {
  const fix = udevRuleFor({ vendorId: '046d', productId: 'c52b' });
  assert.equal(fix.rule, 'SUBSYSTEM=="usb", ATTR{idVendor}=="046d", ATTR{idProduct}=="c52b", MODE="0660", GROUP="plugdev"');
  assert.equal(fix.file, '/etc/udev/rules.d/70-devvm-usb.rules');
  assert.equal(UDEV_RULES_FILE, fix.file);
  assert.deepEqual(fix.commands, [
    `echo '${fix.rule}' | sudo tee -a /etc/udev/rules.d/70-devvm-usb.rules`,
    'sudo udevadm control --reload-rules',
    'sudo udevadm trigger --subsystem-match=usb --attr-match=idVendor=046d --attr-match=idProduct=c52b',
  ]);
  assert.match(fix.note, /must be in the group "plugdev"/);
  assert.equal(
    udevRuleFor({ vendorId: '0781', productId: '5581' }, 'devvm').rule,
    'SUBSYSTEM=="usb", ATTR{idVendor}=="0781", ATTR{idProduct}=="5581", MODE="0660", GROUP="devvm"',
  );
});

test('udevRuleFor refuses anything that would not be a plain rule token', () => {
  const bad = (f: () => unknown) => assert.throws(f, (e: unknown) => e instanceof DevvmError && e.code === 'invalid-argument');
  bad(() => udevRuleFor({ vendorId: '46d', productId: 'c52b' }));
  bad(() => udevRuleFor({ vendorId: '046D', productId: 'c52b' }));
  bad(() => udevRuleFor({ vendorId: '046d', productId: "c52b'; rm -rf /" }));
  bad(() => udevRuleFor({ vendorId: '046d', productId: 'c52b' }, 'plug dev'));
  bad(() => udevRuleFor({ vendorId: '046d', productId: 'c52b' }, 'x", MODE="0666'));
  bad(() => udevRuleFor({ vendorId: '046d', productId: 'c52b' }, ''));
});

test('canOpen: read-write access to the node', () => {
  const node = path.join(tmp, 'dev-001-005');
  writeFileSync(node, '');
  chmodSync(node, 0o600);
  assert.equal(canOpen(node), true);
  assert.equal(canOpen(path.join(tmp, 'absent')), false);
  chmodSync(node, 0o444);
  // root passes any mode check; others must be refused write on a 0444 node
  assert.equal(canOpen(node), process.getuid?.() === 0);
});
