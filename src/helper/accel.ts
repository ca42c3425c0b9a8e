/**
 * Which QEMU accelerator to use. A /dev/kvm that opens is not enough: nested KVM without
 * hardware help runs guests far slower than TCG, so KVM is chosen only when a tiny guest
 * finishes within a deadline (native addon probe, else a short QEMU run).
 */
import { constants, accessSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DevvmError } from '../shared/errors';
import { log } from './log';
import { loadNative } from './native';
import { ProcessError, run } from './proc';

export type AccelName = 'kvm' | 'hvf' | 'tcg';

export interface AccelChoice {
  name: AccelName;
  reason: string;
  probeMs?: number;
}

export interface ProbeOutcome {
  via: 'addon' | 'qemu';
  ok: boolean;
  ms: number;
  reason: string;
}

/** Everything the decision depends on, gathered by chooseAccelerator. */
export interface AccelFacts {
  platform: NodeJS.Platform;
  /** DEVVM_ACCEL as given (any case), or undefined. */
  forced?: string;
  kvmDevice: 'missing' | 'no-access' | 'ok';
  /** Absent when no probe ran (not Linux, device unusable, or forced). */
  probe?: ProbeOutcome;
}

export const ADDON_DEADLINE_MS = 1500;
export const QEMU_DEADLINE_MS = 4000;
const SPEED_HINT = 'VMs run under TCG emulation, much slower';

function parseForced(v: string | undefined): AccelName | null {
  const s = v?.trim().toLowerCase();
  return s === 'kvm' || s === 'tcg' || s === 'hvf' ? s : null;
}

/** Pure: facts -> choice. Unit-tested; no I/O. */
export function decideAccelerator(f: AccelFacts): AccelChoice {
  let note = '';
  const forced = parseForced(f.forced);
  if (forced) return { name: forced, reason: `forced by DEVVM_ACCEL=${forced}` };
  // A typo must not silently pick something else: say it was ignored.
  if (f.forced?.trim()) note = `DEVVM_ACCEL=${f.forced} ignored (use kvm, hvf or tcg); `;
  if (f.platform === 'darwin') return { name: 'hvf', reason: `${note}macOS: Hypervisor.framework` };
  if (f.platform !== 'linux') return { name: 'tcg', reason: `${note}no hardware accelerator supported on ${f.platform}; ${SPEED_HINT}` };
  if (f.kvmDevice === 'missing') return { name: 'tcg', reason: `${note}/dev/kvm missing; ${SPEED_HINT}` };
  if (f.kvmDevice === 'no-access') {
    return { name: 'tcg', reason: `${note}/dev/kvm is not readable and writable by this user (add it to the kvm group); ${SPEED_HINT}` };
  }
  if (!f.probe) return { name: 'tcg', reason: `${note}KVM could not be probed; ${SPEED_HINT}` };
  const via = f.probe.via === 'addon' ? 'native probe' : 'QEMU probe';
  if (f.probe.ok) return { name: 'kvm', reason: `${note}${f.probe.reason} (${via})`, probeMs: f.probe.ms };
  return { name: 'tcg', reason: `${note}${f.probe.reason} (${via}); ${SPEED_HINT}`, probeMs: f.probe.ms };
}

export function kvmDeviceState(dev = '/dev/kvm'): AccelFacts['kvmDevice'] {
  if (!existsSync(dev)) return 'missing';
  try {
    accessSync(dev, constants.R_OK | constants.W_OK);
    return 'ok';
  } catch {
    return 'no-access';
  }
}

const PROBE_MARKER = 'DEVVM-KVM-PROBE-OK';

/**
 * A 512-byte boot sector: the same tight loop as the native probe (here 30M iterations),
 * then a marker string to COM1 and halt. Real KVM prints it within QEMU's startup time; a
 * crawling KVM never gets through SeaBIOS and the loop. A string, not one byte, so
 * nothing the firmware might print can be mistaken for it.
 */
export function probeBootSector(iterations = 30_000_000): Buffer {
  const head = [
    0xfa, //                   cli
    0x31, 0xc0, //             xor ax, ax
    0x8e, 0xd8, //             mov ds, ax
    0xfc, //                   cld
    0x66, 0xb9, 0, 0, 0, 0, // mov ecx, iterations  (imm32 at 8)
    0x66, 0x49, //             l: dec ecx
    0x75, 0xfc, //             jnz l
    0xba, 0xf8, 0x03, //       mov dx, 0x3f8 (COM1)
    0xbe, 0, 0, //             mov si, msg          (imm16 at 20)
    0xac, //                   p: lodsb
    0x84, 0xc0, //             test al, al
    0x74, 0x03, //             jz h
    0xee, //                   out dx, al
    0xeb, 0xf8, //             jmp p
    0xf4, //                   h: hlt
    0xeb, 0xfd, //             jmp h
  ];
  const sector = Buffer.alloc(512);
  Buffer.from(head).copy(sector);
  sector.writeUInt32LE(iterations, 8);
  sector.writeUInt16LE(0x7c00 + head.length, 20); // BIOS loads the sector at 0:0x7c00
  sector.write(`${PROBE_MARKER}\0`, head.length, 'latin1');
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/**
 * Times a boot-sector guest under `qemu -accel kvm`; kills QEMU at the deadline. The CPU
 * model defaults to `host`, the one VMs get under KVM (qemu/args.ts), so a KVM that
 * cannot run that model (e.g. rejects its MSRs) is rejected here, not at VM start.
 */
export async function probeKvmWithQemu(
  qemu = 'qemu-system-x86_64',
  deadlineMs = QEMU_DEADLINE_MS,
  cpu = 'host',
): Promise<ProbeOutcome> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'devvm-kvm-probe-'));
  const disk = path.join(dir, 'boot.img');
  writeFileSync(disk, probeBootSector());
  const started = performance.now();
  const stop = new AbortController();
  let gotMs: number | null = null;
  let out = '';
  try {
    await run(
      qemu,
      [
        '-accel', 'kvm',
        '-machine', 'pc',
        '-cpu', cpu,
        '-m', '16',
        '-nodefaults',
        '-display', 'none',
        '-no-reboot',
        '-serial', 'stdio',
        '-drive', `file=${disk},format=raw,if=ide,index=0,media=disk`,
      ],
      {
        signal: stop.signal,
        timeoutMs: deadlineMs,
        onOutput: (chunk, stream) => {
          if (stream !== 'stdout' || gotMs !== null) return;
          out = (out + chunk).slice(-4096);
          if (out.includes(PROBE_MARKER)) {
            gotMs = Math.round(performance.now() - started);
            stop.abort(); // done: no need to let the guest sit in hlt
          }
        },
      },
    );
  } catch (e) {
    if (gotMs !== null) {
      return { via: 'qemu', ok: true, ms: gotMs, reason: `KVM booted a probe guest in QEMU in ${gotMs} ms` };
    }
    const err = e instanceof DevvmError ? e : null;
    const ms = Math.round(performance.now() - started);
    if (err?.code === 'timeout') {
      return {
        via: 'qemu',
        ok: false,
        ms,
        reason: `KVM too slow: QEMU probe guest printed nothing within ${deadlineMs} ms (nested virtualization without hardware help?)`,
      };
    }
    if (err?.code === 'missing-dependency') return { via: 'qemu', ok: false, ms, reason: `${qemu} is not installed, so KVM could not be probed` };
    // QEMU's first error line says why (e.g. "failed to set MSR 0x10a"); the rest is noise.
    const stderr = e instanceof ProcessError ? e.stderr : '';
    const line = stderr.split('\n').find((l) => /error|fail/i.test(l))?.replace(/^[^:]*qemu[^:]*:\s*/, '').trim();
    return { via: 'qemu', ok: false, ms, reason: `QEMU could not use KVM: ${line || (e as Error).message}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // QEMU exited on its own (the guest cannot make it do that) before printing.
  const ms = Math.round(performance.now() - started);
  if (gotMs !== null) return { via: 'qemu', ok: true, ms: gotMs, reason: `KVM booted a probe guest in QEMU in ${gotMs} ms` };
  return { via: 'qemu', ok: false, ms, reason: 'QEMU probe guest exited without output under KVM' };
}

export interface ChooseOptions {
  qemu?: string;
  /** Deadline of the probe that runs: native (default 1500 ms) or QEMU (default 4000 ms). */
  deadlineMs?: number;
  env?: NodeJS.ProcessEnv;
  /** false: skip the native addon and probe with QEMU (tests, doctor comparisons). */
  useAddon?: boolean;
}

const memo = new Map<string, Promise<AccelChoice>>();

/** Decides once per process (per distinct options); later calls share the result. */
export function chooseAccelerator(opts: ChooseOptions = {}): Promise<AccelChoice> {
  const env = opts.env ?? process.env;
  const key = JSON.stringify([opts.qemu ?? null, opts.deadlineMs ?? null, env.DEVVM_ACCEL ?? null, opts.useAddon ?? true]);
  let p = memo.get(key);
  if (!p) {
    p = gather(opts, env).then(decideAccelerator);
    memo.set(key, p);
  }
  return p;
}

async function gather(opts: ChooseOptions, env: NodeJS.ProcessEnv): Promise<AccelFacts> {
  const facts: AccelFacts = { platform: process.platform, forced: env.DEVVM_ACCEL, kvmDevice: 'missing' };
  if (parseForced(env.DEVVM_ACCEL) || process.platform !== 'linux') return facts;
  facts.kvmDevice = kvmDeviceState();
  if (facts.kvmDevice !== 'ok') return facts;
  const native = opts.useAddon === false ? null : loadNative().addon;
  if (native) {
    const r = await native.kvmProbeAsync(opts.deadlineMs ?? ADDON_DEADLINE_MS);
    facts.probe = { via: 'addon', ...r };
    // The addon proves KVM runs code fast, not that QEMU's `-cpu host` starts on this
    // host (nested setups can reject MSRs): confirm with the configuration VMs get.
    if (r.ok) facts.probe = await probeKvmWithQemu(opts.qemu, QEMU_DEADLINE_MS);
  } else {
    facts.probe = await probeKvmWithQemu(opts.qemu, opts.deadlineMs ?? QEMU_DEADLINE_MS);
  }
  log.info(`KVM probe (${facts.probe.via}): ${facts.probe.ok ? 'ok' : 'rejected'} in ${facts.probe.ms} ms: ${facts.probe.reason}`);
  return facts;
}
