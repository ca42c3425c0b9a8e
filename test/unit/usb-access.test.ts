import assert from 'node:assert/strict';
import { chmodSync, closeSync, mkdtempSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import { openUsbNode, udevRuleFor, UDEV_RULES_FILE } from '../../src/helper/usb/access';

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

test('openUsbNode: an fd opened read-write; a missing node says unplugged; a refusal names the udev rule', () => {
  const node = path.join(tmp, 'dev-001-005');
  writeFileSync(node, '');
  chmodSync(node, 0o600);
  const dev = { id: '1-5', busnum: 1, devnum: 5, vendorId: '046d', productId: 'c52b', devnode: node };
  const fd = openUsbNode(dev);
  writeSync(fd, 'x');
  closeSync(fd);
  assert.throws(() => openUsbNode({ ...dev, devnode: path.join(tmp, 'absent') }), (e: unknown) => e instanceof DevvmError && e.code === 'not-found' && /unplugged/.test(e.hint ?? ''));
  chmodSync(node, 0o444);
  // root passes any mode check; others must be refused write on a 0444 node
  if (process.getuid?.() !== 0) assert.throws(() => openUsbNode(dev), /no permission to open/);
});
