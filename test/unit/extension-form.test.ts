/** The Create VM form's checks and message parsing (src/extension/form.ts, no vscode). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_INPUT, parseFromConsole } from '../../src/extension/consoleProtocol';
import { checkForm, deriveShortName, parseFromWebview, type CreateForm } from '../../src/extension/form';

const form = (over: Partial<CreateForm> = {}): CreateForm => ({
  image: 'debian-12',
  name: 'web',
  fullName: 'Alice Example',
  user: 'aliceexample',
  password: 'p@ss: "word" $(x)',
  confirm: 'p@ss: "word" $(x)',
  autologin: true,
  ssh: true,
  cpus: '2',
  memoryMiB: '2048',
  diskGiB: '20',
  display: false,
  displaySize: 'auto',
  shares: [],
  ports: '',
  connect: true,
  ...over,
});
const ctx = { images: ['debian-12'], existing: ['taken'], hostCpus: 4, hostMiB: 8192 };

test('short name derived from the full name', () => {
  assert.equal(deriveShortName('Alice Example'), 'aliceexample');
  assert.equal(deriveShortName('Zoë Müller-Lüdenscheidt'), 'zoemuller-ludenscheidt');
  assert.equal(deriveShortName('Jürgen Groß'), 'jurgengross');
  assert.equal(deriveShortName('42 Douglas'), 'douglas');
  assert.equal(deriveShortName('李小龍'), '');
  assert.equal(deriveShortName('a'.repeat(40)).length, 32);
});

test('a valid form becomes vm/create parameters', () => {
  const r = checkForm(form(), ctx);
  assert.deepEqual(r.errors, {});
  assert.deepEqual(r.params, {
    name: 'web', image: 'debian-12', user: 'aliceexample', fullName: 'Alice Example', password: 'p@ss: "word" $(x)',
    autologin: true, ssh: true, cpus: 2, memoryMiB: 2048, diskGiB: 20,
  });
  assert.equal(r.connect, true);
});

test('every field is checked with the helper rules', () => {
  const r = checkForm(form({ image: 'nope', name: 'Bad Name', fullName: 'a:b', user: 'root', password: 'x', confirm: 'y', cpus: '9', memoryMiB: '100', diskGiB: '0' }), ctx);
  assert.deepEqual(Object.keys(r.errors).sort(), ['confirm', 'cpus', 'diskGiB', 'fullName', 'image', 'memoryMiB', 'name', 'user']);
  assert.equal(r.params, undefined);
  assert.match(r.errors.name!, /invalid VM name/);
  assert.match(r.errors.user!, /reserved/);
  assert.match(r.errors.fullName!, /":"/);
  assert.match(r.errors.cpus!, /1-4/);
  assert.equal(r.errors.confirm, 'the passwords do not match');
});

test('taken names, missing images, connect without SSH', () => {
  assert.match(checkForm(form({ name: 'taken' }), ctx).errors.name!, /already exists/);
  assert.match(checkForm(form({ image: '' }), { ...ctx, images: [] }).errors.image!, /pick an image/);
  assert.match(checkForm(form({ ssh: false }), ctx).errors.connect!, /SSH/);
});

test('a display: "auto" or WxH becomes create params display/displaySize; a bad size is the field\'s error; off sends nothing', () => {
  assert.deepEqual(checkForm(form({ display: true, displaySize: 'auto' }), ctx).params?.displaySize, 'auto');
  const fixed = checkForm(form({ display: true, displaySize: ' 1280X800 ' }), ctx).params!;
  assert.equal(fixed.display, true);
  assert.deepEqual(fixed.displaySize, { width: 1280, height: 800 });
  for (const bad of ['', 'big', '100x100', '9999x9999', '1280x800x2']) {
    const r = checkForm(form({ display: true, displaySize: bad }), ctx);
    assert.match(r.errors.displaySize ?? '', /invalid display size/, bad);
    assert.equal(r.params, undefined);
  }
  const off = checkForm(form({ display: false, displaySize: 'nonsense' }), ctx).params!;
  assert.ok(!('display' in off) && !('displaySize' in off), 'no display asked, the size field is not read');
  assert.equal(parseFromWebview({ type: 'submit', form: { ...form(), display: 'yes' } }), null);
  assert.equal(parseFromWebview({ type: 'submit', form: { ...form(), displaySize: { width: 1, height: 1 } } }), null);
});

test('no password: a key-only account (no password sent)', () => {
  const r = checkForm(form({ password: '', confirm: '' }), ctx);
  assert.equal(r.params?.password, undefined);
});

test('messages from the webview are parsed strictly', () => {
  assert.deepEqual(parseFromWebview({ type: 'ready' }), { type: 'ready' });
  assert.deepEqual(parseFromWebview({ type: 'submit', form: form() }), { type: 'submit', form: form() });
  for (const bad of [null, 'submit', [], { type: 'eval' }, { type: 'submit' }, { type: 'submit', form: [] },
    { type: 'submit', form: { ...form(), cpus: 2 } }, { type: 'submit', form: { ...form(), ssh: 'yes' } },
    { type: 'submit', form: { ...form(), extra: 'x' } }, { type: 'submit', form: { ...form(), name: 'x'.repeat(5000) } },
    { type: 'submit', form: (({ image: _i, ...rest }) => rest)(form()) }]) {
    assert.equal(parseFromWebview(bad), null, JSON.stringify(bad)?.slice(0, 80));
  }
});

test('console webview messages are parsed strictly', () => {
  assert.deepEqual(parseFromConsole({ type: 'ready', cols: 80, rows: 24 }), { type: 'ready', cols: 80, rows: 24 });
  assert.deepEqual(parseFromConsole({ type: 'input', data: 'ls\r' }), { type: 'input', data: 'ls\r' });
  for (const bad of [null, [], { type: 'input' }, { type: 'input', data: '' }, { type: 'input', data: 'x'.repeat(MAX_INPUT + 1) },
    { type: 'input', data: 1 }, { type: 'input', data: 'x', extra: 1 }, { type: 'resize', cols: 0, rows: 24 }, { type: 'resize', cols: 80.5, rows: 24 },
    { type: 'resize', cols: 80, rows: 1e9 }, { type: 'exec', data: 'x' }]) {
    assert.equal(parseFromConsole(bad), null, JSON.stringify(bad)?.slice(0, 60));
  }
});

test('Shared folders rows become create\'s shares: the guest path defaults to the host\'s, each row checked', () => {
  const ok = checkForm(form({ shares: [{ hostPath: '/home/al/src', guestPath: '', readOnly: false }, { hostPath: ' /srv/data ', guestPath: '/data', readOnly: true }] }), ctx);
  assert.deepEqual(ok.errors, {});
  assert.deepEqual(ok.params?.shares, [
    { hostPath: '/home/al/src', guestPath: '/home/al/src', readOnly: false },
    { hostPath: '/srv/data', guestPath: '/data', readOnly: true },
  ]);
  assert.ok(!('shares' in checkForm(form(), ctx).params!), 'no rows: nothing sent');
  const bad = (rows: CreateForm['shares']) => checkForm(form({ shares: rows }), ctx).errors.shares;
  assert.equal(bad([{ hostPath: '', guestPath: '', readOnly: false }]), 'shared folder 1: pick a host folder');
  assert.match(bad([{ hostPath: 'src', guestPath: '', readOnly: false }])!, /^shared folder 1: host folder "src" is not an absolute path/);
  assert.match(bad([{ hostPath: '/a', guestPath: '', readOnly: false }, { hostPath: '/b', guestPath: 'rel', readOnly: false }])!, /^shared folder 2: guest folder "rel" is not an absolute path/);
  assert.equal(bad([{ hostPath: '/a', guestPath: '/x', readOnly: false }, { hostPath: '/x', guestPath: '', readOnly: true }]), 'shared folder 2: /x in the guest is shared twice');
  assert.equal(checkForm(form({ shares: [{ hostPath: '', guestPath: '', readOnly: false }] }), ctx).params, undefined);
});

test('static port forwards: HOST:GUEST, one port for both, /udp; bad ones are the field\'s error', () => {
  assert.deepEqual(checkForm(form({ ports: '8080:80, 5432  53/udp 127.0.0.2:9000:90' }), ctx).params?.ports, [
    { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80 },
    { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 5432, guestPort: 5432 },
    { protocol: 'udp', hostAddress: '127.0.0.1', hostPort: 53, guestPort: 53 },
    { protocol: 'tcp', hostAddress: '127.0.0.2', hostPort: 9000, guestPort: 90 },
  ]);
  assert.ok(!('ports' in checkForm(form({ ports: ' ' }), ctx).params!));
  for (const [text, re] of [['80:0', /guest port must be a port number 1-65535, got "0"/], ['http', /host port must be a port number 1-65535, got "http"/], ['8080:80 8080:81', /host port 8080 is forwarded twice/], ['300.1.1.1:80:80', /invalid host address/], ['10.0.0.1:80', /host port must be a port number 1-65535, got "10.0.0.1"/]] as const) {
    assert.match(checkForm(form({ ports: text }), ctx).errors.ports ?? '', re, text);
  }
  assert.deepEqual(checkForm(form({ ports: '8080:80 8080:80/udp' }), ctx).errors, {}, 'TCP and UDP are separate ports');
});

test('messages with shares are parsed strictly; a folder pick names a row', () => {
  const rows = [{ hostPath: '/a', guestPath: '', readOnly: true }];
  assert.deepEqual(parseFromWebview({ type: 'submit', form: form({ shares: rows }) }), { type: 'submit', form: form({ shares: rows }) });
  assert.deepEqual(parseFromWebview({ type: 'pickFolder', row: 3 }), { type: 'pickFolder', row: 3 });
  for (const bad of [
    { ...form(), shares: 'x' },
    { ...form(), shares: [{ hostPath: '/a', guestPath: '' }] },
    { ...form(), shares: [{ hostPath: '/a', guestPath: '', readOnly: 'no' }] },
    { ...form(), shares: [{ hostPath: '/a', guestPath: '', readOnly: false, extra: 1 }] },
    { ...form(), shares: [{ hostPath: '/'.repeat(5000), guestPath: '', readOnly: false }] },
    { ...form(), shares: Array.from({ length: 33 }, () => rows[0]) },
    { ...form(), shares: [null] },
    { ...form(), ports: 8080 },
    (({ shares: _s, ...rest }) => rest)(form()),
  ]) {
    assert.equal(parseFromWebview({ type: 'submit', form: bad }), null, JSON.stringify(bad).slice(0, 120));
  }
  for (const bad of [{ type: 'pickFolder' }, { type: 'pickFolder', row: -1 }, { type: 'pickFolder', row: 1.5 }, { type: 'pickFolder', row: '1' }, { type: 'pickFolder', row: 1, path: '/etc' }, { type: 'pickFolder', row: 2e6 }]) {
    assert.equal(parseFromWebview(bad), null, JSON.stringify(bad));
  }
});
