/**
 * Saving and restoring a VM's RAM state through QEMU's migration stream (pause-backup-
 * resume). The stream goes through a file descriptor handed to QEMU over QMP (getfd,
 * SCM_RIGHTS via the native addon), so no path is ever pasted into a shell; without the
 * addon it falls back to QEMU's `exec:` with a single-quoted path.
 */
import { closeSync, fsyncSync, openSync } from 'node:fs';
import { DevvmError } from '../../shared/errors';
import { loadNative } from '../native';
import type { Qmp } from './qmp';

interface MigrateInfo {
  status?: string;
  'error-desc'?: string;
}

/** POSIX shell single quoting, for the fallback only. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

async function waitMigration(qmp: Qmp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await qmp.execute<MigrateInfo>('query-migrate');
    if (info.status === 'completed') return;
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw new DevvmError('process-failed', `saving the RAM state failed: ${info['error-desc'] ?? info.status}`);
    }
    if (Date.now() > deadline) throw new DevvmError('timeout', `saving the RAM state took longer than ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Writes the paused guest's RAM and device state to `file` (created 0600, fsynced). */
export async function saveRamState(qmp: Qmp, file: string, timeoutMs = 600_000): Promise<void> {
  // QEMU caps migration at 128 MiB/s by default; a local file can take far more.
  await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 64 * 1024 ** 3 });
  const addon = loadNative().addon;
  if (addon) {
    const fd = openSync(file, 'w', 0o600);
    try {
      await qmp.executeWithFd('getfd', { fdname: 'devvm-ram-out' }, fd, addon.sendFd);
    } finally {
      closeSync(fd); // QEMU holds its own copy now
    }
    await qmp.execute('migrate', { uri: 'fd:devvm-ram-out' });
  } else {
    await qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(file)}` });
  }
  await waitMigration(qmp, timeoutMs);
  const fd = openSync(file, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Feeds `file` to a QEMU started with `-incoming defer`; resolves once the guest is paused and ready. */
export async function loadRamState(qmp: Qmp, file: string, timeoutMs = 600_000): Promise<void> {
  const addon = loadNative().addon;
  if (addon) {
    const fd = openSync(file, 'r');
    try {
      await qmp.executeWithFd('getfd', { fdname: 'devvm-ram-in' }, fd, addon.sendFd);
    } finally {
      closeSync(fd);
    }
    await qmp.execute('migrate-incoming', { uri: 'fd:devvm-ram-in' });
  } else {
    await qmp.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(file)}` });
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await qmp.execute<{ status: string }>('query-status');
    if (st.status === 'paused' || st.status === 'postmigrate') return;
    if (st.status !== 'inmigrate') {
      const mig = await qmp.execute<MigrateInfo>('query-migrate').catch(() => ({}) as MigrateInfo);
      throw new DevvmError('process-failed', `restoring the RAM state failed: ${mig['error-desc'] ?? st.status}`);
    }
    if (Date.now() > deadline) throw new DevvmError('timeout', `restoring the RAM state took longer than ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
