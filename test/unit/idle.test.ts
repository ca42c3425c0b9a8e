/** Idle suspend's logic with a fake clock and fake kernel tables (vm/idle.ts, vm/settings.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { idleDefault, idleSetting, idleText } from '../../src/shared/idle';
import { countTcp, countUnix, IdleWatch, type IdleVm } from '../../src/helper/vm/idle';
import { idleLimit, settingsOf } from '../../src/helper/vm/settings';

const HEAD = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
// Port 40022 = 0x9C56. The listener (0A), QEMU's end of a session (local 127.0.0.1:40022, 01),
// the client's end of it (remote 40022: not counted twice), a closed one (06 TIME_WAIT), another port.
const tcpRow = (local: string, remote: string, st: string) => `   0: ${local} ${remote} ${st} 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 20 4 30 10 -1`;
const session = tcpRow('0100007F:9C56', '0100007F:B1C2', '01');
const tcp = (n: number) => [
  [HEAD, tcpRow('0100007F:9C56', '00000000:0000', '0A'), ...Array.from({ length: n }, () => session), tcpRow('0100007F:B1C2', '0100007F:9C56', '01'), tcpRow('0100007F:9C56', '0100007F:B1C3', '06'), tcpRow('0100007F:9C57', '0100007F:B1C4', '01')].join('\n'),
  [HEAD, tcpRow('0000000000000000FFFF00000100007F:9C56', '0000000000000000FFFF00000100007F:C000', '01')].join('\n'),
];

const UHEAD = 'Num       RefCount Protocol Flags    Type St Inode Path';
const vnc = '/h/my vms/vms/web/vnc.sock';
const serial = '/h/my vms/vms/web/serial.sock';
const unixRow = (flags: string, st: string, p: string) => `0000000000000000: 00000002 00000000 ${flags} 0001 ${st} 12345 ${p}`;
const unix = (vncClients: number, serialClients = 0) =>
  [UHEAD, unixRow('00010000', '01', vnc), unixRow('00010000', '01', serial), ...Array.from({ length: vncClients }, () => unixRow('00000000', '03', vnc)), ...Array.from({ length: serialClients }, () => unixRow('00000000', '03', serial)), unixRow('00000000', '03', '/other.sock')].join('\n');

test('sessions are QEMU-side ESTABLISHED ends on 127.0.0.1:PORT (tcp and tcp6), and accepted console sockets', () => {
  assert.equal(countTcp(tcp(0), 40022), 1, 'the IPv4-mapped one in tcp6');
  assert.equal(countTcp(tcp(2), 40022), 3);
  assert.equal(countTcp(tcp(2), 40023), 1);
  assert.equal(countTcp(['', 'garbage\nlines'], 40022), 0);
  assert.equal(countUnix(unix(0), [vnc, serial]), 0, 'listeners are not clients');
  assert.equal(countUnix(unix(2, 1), [vnc, serial]), 3, 'paths with spaces');
  assert.equal(countUnix(unix(2, 1), [serial]), 1);
});

/** A fake world: one running VM, a clock, sessions to set, suspends recorded. */
function world(o: { limitMin: number | null; failSuspend?: boolean }) {
  const w = { now: 0, ssh: 0, vnc: 0, own: 0, running: true, suspends: [] as number[], logs: [] as string[] };
  const vm = (): IdleVm => ({ name: 'web', limitMin: o.limitMin, sshPort: 40022, consoles: [vnc, serial], ownClients: w.own });
  const watch = new IdleWatch({
    now: () => w.now,
    vms: () => (w.running ? [vm()] : []),
    readTcp: () => [[HEAD, ...Array.from({ length: w.ssh }, () => session)].join('\n')],
    readUnix: () => unix(w.vnc),
    suspend: async () => {
      if (o.failSuspend) throw new Error('VM "web" has hot-plugged disks');
      w.suspends.push(w.now);
      w.running = false;
    },
    log: (m) => w.logs.push(m),
  });
  /** Ticks every 5 s up to `untilMs`. */
  const run = async (untilMs: number) => {
    while (w.now < untilMs) {
      w.now += 5000;
      await watch.tick();
    }
  };
  return { w, watch, run };
}

test('a session open past the limit keeps the VM running; closing it starts the minute, then it is suspended once', async () => {
  const { w, run } = world({ limitMin: 1 });
  w.ssh = 1;
  await run(10 * 60_000);
  assert.deepEqual(w.suspends, [], 'not while a session is open');
  w.ssh = 0;
  const closedAt = w.now;
  await run(closedAt + 55_000);
  assert.deepEqual(w.suspends, [], 'not before the minute');
  await run(closedAt + 10 * 60_000);
  assert.equal(w.suspends.length, 1);
  assert.ok(w.suspends[0]! - closedAt >= 60_000 && w.suspends[0]! - closedAt <= 65_000, `${w.suspends[0]! - closedAt} ms`);
});

test('a VM never connected to suspends a limit after it was first seen running; a console client keeps it awake', async () => {
  const { w, run } = world({ limitMin: 2 });
  w.vnc = 1;
  await run(5 * 60_000);
  assert.deepEqual(w.suspends, [], 'a Display tab counts');
  w.vnc = 1;
  w.own = 1; // that connection is the helper's own RFB client: not a session
  const from = w.now;
  await run(from + 3 * 60_000);
  assert.equal(w.suspends.length, 1);
  assert.ok(w.suspends[0]! - from <= 125_000);
});

test('no limit: never suspended, and the tables are not even read', async () => {
  const { w, run } = world({ limitMin: null });
  await run(24 * 60 * 60_000);
  assert.deepEqual(w.suspends, []);
});

test('a suspend that fails is logged and tried again only after another full period', async () => {
  const { w, run } = world({ limitMin: 1, failSuspend: true });
  await run(65_000); // first seen at 5 s, a minute later
  assert.equal(w.logs.filter((l) => l.includes('failed')).length, 1);
  await run(120_000);
  assert.equal(w.logs.filter((l) => l.includes('failed')).length, 1, 'not every tick');
  await run(125_000);
  assert.equal(w.logs.filter((l) => l.includes('failed')).length, 2);
});

test('a VM that stopped and runs again counts its idle time from its new run', async () => {
  const { w, run } = world({ limitMin: 1 });
  await run(50_000);
  w.running = false;
  await run(10 * 60_000);
  w.running = true;
  const back = w.now;
  await run(back + 55_000);
  assert.deepEqual(w.suspends, []);
  await run(back + 70_000);
  assert.equal(w.suspends.length, 1);
});

test('settings: minutes, off, default; the VM\'s own wins over the helper\'s default; the tree text', () => {
  assert.equal(idleSetting('30'), 30);
  assert.equal(idleSetting('off'), 'off');
  assert.equal(idleSetting('default'), 'default');
  for (const bad of ['0', '-1', '1.5', '', 'never', 100000, 0]) assert.throws(() => idleSetting(bad), /idle suspend must be/);
  assert.equal(idleDefault(undefined), null);
  assert.equal(idleDefault('off'), null);
  assert.equal(idleDefault('0'), null);
  assert.equal(idleDefault('45'), 45);
  assert.throws(() => idleDefault('soon'));
  assert.equal(idleLimit({}, 30), 30);
  assert.equal(idleLimit({ idleSuspend: 5 }, 30), 5);
  assert.equal(idleLimit({ idleSuspend: 'off' }, 30), null);
  assert.equal(idleLimit({}, null), null);
  assert.deepEqual(settingsOf({ idleSuspend: 'default', autostart: false }), { idleSuspend: undefined, autostart: undefined });
  assert.deepEqual(settingsOf({ idleSuspend: 10, autostart: true }), { idleSuspend: 10, autostart: true });
  assert.equal(idleText(30), 'suspends after 30 min idle');
  assert.equal(idleText(undefined), 'never suspends when idle');
});

test('touch (ssh-proxy just woke the VM) restarts the idle time, so no suspend falls between the wake and the connection', async () => {
  const { w, watch, run } = world({ limitMin: 1 });
  await run(60_000);
  watch.touch('web');
  await run(115_000);
  assert.deepEqual(w.suspends, []);
  await run(125_000);
  assert.equal(w.suspends.length, 1);
});
