/**
 * `devvm helper install`: a systemd user unit that runs the helper at login (so VMs marked
 * autostart come up with it), and its removal. The unit runs this node and dist/helper.js
 * by absolute path, with the DEVVM_HOME (and the few DEVVM_* settings) of the shell that
 * installed it.
 */
import os from 'node:os';
import path from 'node:path';
import { DevvmError } from '../shared/errors';

export const UNIT_NAME = 'devvm-helper.service';

/** Settings the helper reads from its environment, carried into the unit when set. */
const CARRIED = ['DEVVM_HOME', 'DEVVM_QEMU', 'DEVVM_IDLE_SUSPEND', 'DEVVM_STOP_TIMEOUT_MS', 'PATH'] as const;

export function unitFile(env: NodeJS.ProcessEnv = process.env): string {
  const config = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(os.homedir(), '.config');
  return path.join(config, 'systemd', 'user', UNIT_NAME);
}

/**
 * A quoted word of a unit file: C-style escapes for \ and ", %% for systemd's specifiers,
 * and in ExecStart $$ for its variable expansion.
 */
function quoted(value: string, exec: boolean): string {
  if (/[\r\n\0]/.test(value)) throw new DevvmError('invalid-argument', `not usable in a systemd unit: ${JSON.stringify(value)} contains a line break`);
  let v = value.replace(/[\\"]/g, (c) => `\\${c}`).replace(/%/g, '%%');
  if (exec) v = v.replace(/\$/g, '$$$$');
  return `"${v}"`;
}

export function renderUnit(o: { node: string; helper: string; env: NodeJS.ProcessEnv }): string {
  const vars = CARRIED.filter((k) => o.env[k]).map((k) => `Environment=${quoted(`${k}=${o.env[k]}`, false)}`);
  return [
    '# Written by "devvm helper install"; "devvm helper uninstall" removes it.',
    '[Unit]',
    'Description=devvm helper (developer VMs)',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${quoted(o.node, true)} ${quoted(o.helper, true)}`,
    ...vars,
    // VMs outlive their helper (as with "devvm helper stop"): stopping the unit stops the helper only.
    'KillMode=process',
    'Restart=on-failure',
    // 3: another helper already serves this DEVVM_HOME; retrying would not change that.
    'RestartPreventExitStatus=3',
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ].join('\n');
}
