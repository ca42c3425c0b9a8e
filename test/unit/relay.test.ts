/** ssh-proxy's relay (RpcSession.relay) in a real process: bytes both ways, half-close, exit. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';

const SESSION = path.resolve(__dirname, '../../src/cli/session.ts');

function relay(port: number, input: Buffer, sentIdent?: string): Promise<{ code: number | null; stdout: Buffer; stderr: string; ms: number }> {
  const t0 = Date.now();
  const script = `const { RpcSession } = require(${JSON.stringify(SESSION)}); new RpcSession('/nonexistent').relay('127.0.0.1', ${port}, ${JSON.stringify(sentIdent)}).then((c) => { process.exitCode = c; }, (e) => { process.stderr.write(e.message); process.exitCode = 1; });`;
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => (stderr += c));
  child.stdin.end(input);
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr, ms: Date.now() - t0 })));
}

test('bytes go both ways unchanged; our stdin ending half-closes, the server ending ends the process', async (t) => {
  // An echo server that answers after the client's end (half-close), then closes.
  const srv = net.createServer((s) => {
    const got: Buffer[] = [];
    s.on('data', (c) => got.push(c));
    s.on('end', () => s.end(Buffer.concat([Buffer.from('echo:'), ...got])));
  }).listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.after(() => srv.close());
  const data = Buffer.from(Array.from({ length: 256 * 1024 }, (_, i) => i % 256));
  const r = await relay((srv.address() as net.AddressInfo).port, data);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.equals(Buffer.concat([Buffer.from('echo:'), data])), 'every byte, in order');
});

test('nothing listening: one line naming the port, exit 1', async () => {
  const srv = net.createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  const r = await relay(port, Buffer.alloc(0));
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`^cannot connect to 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
});

const IDENT = 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3';

/** A server that sends `greeting` in small pieces, then echoes what it got after the client's end. */
async function identServer(t: { after(f: () => void): void }, greeting: string): Promise<number> {
  const srv = net.createServer((s) => {
    const got: Buffer[] = [];
    // Byte by byte: the relay must find the line across chunks.
    for (const ch of greeting) s.write(ch);
    s.on('data', (c) => got.push(c));
    s.on('end', () => s.end(Buffer.concat([Buffer.from('|echo:'), ...got])));
  }).listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.after(() => srv.close());
  return (srv.address() as net.AddressInfo).port;
}

test('an identification line already sent: sshd\'s own (after any other lines) is dropped, the rest relayed', async (t) => {
  const port = await identServer(t, `hello\r\n${IDENT}\r\nKEXINIT`);
  const r = await relay(port, Buffer.from('client bytes'), IDENT);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString('latin1'), 'KEXINIT|echo:client bytes');
});

test('sshd identifies differently from the line sent: one line naming both, exit 1', async (t) => {
  const port = await identServer(t, 'SSH-2.0-OpenSSH_9.9 Other\r\n');
  const r = await relay(port, Buffer.alloc(0), IDENT);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^the VM's sshd now says "SSH-2\.0-OpenSSH_9\.9 Other", not "SSH-2\.0-OpenSSH_9\.2p1 Debian-2\+deb12u3"/);
  assert.equal(r.stdout.length, 0);
});
