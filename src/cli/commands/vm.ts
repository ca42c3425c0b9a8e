/** A VM's lifecycle: create, start, resume, suspend, stop, delete, list, info. */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { DevvmError } from '../../shared/errors';
import { displaySize } from '../../shared/display';
import { bytes, layerRow, portsText, table, vmStateLine } from '../../shared/format';
import { portArg } from './ports';
import { refusal } from '../../shared/lifecycle';
import { Rpc } from '../../shared/rpc';
import type { VmSummary } from '../../shared/types';
import * as v from '../../shared/validate';
import { int, str, UsageError, type Values } from '../args';
import type { Command } from '../command';
import { agentText } from '../../shared/agent';
import { displayText } from './display';
import { idleArg } from './set';
import { idleText } from '../../shared/idle';
import { parseShareArg } from '../../shared/shares';
import path from 'node:path';
import { shareText } from './share';

function readPassword(values: Values): string | undefined {
  let raw: string;
  if (values['password-stdin']) raw = readFileSync(0, 'utf8');
  else if (typeof values['password-file'] === 'string') raw = readFileSync(values['password-file'], 'utf8');
  else return undefined;
  return raw.replace(/\r?\n$/, '');
}

function defaultUser(): string {
  const name = os.userInfo().username;
  try {
    return v.userName(name);
  } catch {
    throw new UsageError(`your user name "${name}" cannot be used in the guest; pass --user NAME`);
  }
}

/** A path to a .pub file or the key itself. */
function sshKeyArg(k: string): string {
  if (/^(ssh-|ecdsa-|sk-)/.test(k)) return k;
  try {
    return readFileSync(k, 'utf8').trim();
  } catch {
    throw new DevvmError('not-found', `cannot read SSH public key file ${k}`);
  }
}

const startOptions = { 'wait-ssh': { type: 'boolean' }, timeout: { type: 'string' }, 'discard-state': { type: 'boolean' } } as const;

export const vmCommands: Command[] = [
  {
    name: 'create',
    usage: 'NAME --image N [--user U] [--full-name F] [--password-stdin | --password-file F]\n[--ssh-key PUB]... [--autologin] [--no-ssh] [--cpus N] [--memory MiB] [--disk GiB]\n[--display] [--display-size WxH|auto] [--idle-suspend MIN|off] [--autostart]\n[--share HOSTDIR[:GUESTDIR][:ro]]... [--port [ADDR:]HOST:GUEST[/udp]]...\n[--start] [--wait-ssh]',
    summary: 'a new VM on a base image (one small overlay)',
    options: {
      image: { type: 'string' }, user: { type: 'string' }, 'full-name': { type: 'string' },
      'password-stdin': { type: 'boolean' }, 'password-file': { type: 'string' },
      'ssh-key': { type: 'string', multiple: true }, autologin: { type: 'boolean' }, 'no-ssh': { type: 'boolean' },
      cpus: { type: 'string' }, memory: { type: 'string' }, disk: { type: 'string' },
      display: { type: 'boolean' }, 'display-size': { type: 'string' },
      'idle-suspend': { type: 'string' }, autostart: { type: 'boolean' },
      share: { type: 'string', multiple: true },
      port: { type: 'string', multiple: true },
      start: { type: 'boolean' }, 'wait-ssh': { type: 'boolean' },
    },
    positionals: 1,
    async run(ctx, { values, positionals }) {
      if (!values.image) throw new UsageError('--image is required');
      if (values['password-stdin'] && values['password-file']) throw new UsageError('use either --password-stdin or --password-file');
      const idle = idleArg(values['idle-suspend'], false);
      const shares = ((values.share as string[] | undefined) ?? []).map((x) => parseShareArg(x, (p) => path.resolve(p)));
      const ports = ((values.port as string[] | undefined) ?? []).map((p) => portArg(p, false));
      const s = await ctx.call(Rpc.vmCreate, ctx.withToken({
        name: positionals[0]!,
        image: values.image as string,
        user: str(values.user) ?? defaultUser(),
        fullName: str(values['full-name']),
        password: readPassword(values),
        sshKeys: ((values['ssh-key'] as string[] | undefined) ?? []).map(sshKeyArg),
        autologin: Boolean(values.autologin),
        ssh: !values['no-ssh'],
        cpus: int('--cpus', values.cpus),
        memoryMiB: int('--memory', values.memory),
        diskGiB: int('--disk', values.disk),
        ...(values.display ? { display: true } : {}),
        ...(typeof values['display-size'] === 'string' ? { displaySize: displaySize(values['display-size']) } : {}),
        ...(idle !== undefined ? { idleSuspend: idle } : {}),
        ...(values.autostart ? { autostart: true } : {}),
        ...(shares.length ? { shares } : {}),
        ...(ports.length ? { ports } : {}),
        start: Boolean(values.start || values['wait-ssh']),
        waitSsh: Boolean(values['wait-ssh']),
      }));
      ctx.print(s, () => `created ${s.name} (${s.state})${s.state === 'running' && s.sshPort ? `; connect with: devvm ssh ${s.name}` : ''}`);
    },
  },
  {
    name: 'start',
    usage: 'NAME [--wait-ssh] [--timeout SEC] [--discard-state]',
    summary: 'boot it, or resume it when suspended',
    options: startOptions,
    positionals: 1,
    async run(ctx, { values, positionals }) {
      const s = await ctx.call(Rpc.vmStart, ctx.withToken({ name: positionals[0]!, waitSsh: Boolean(values['wait-ssh']), timeoutSec: int('--timeout', values.timeout), discardState: Boolean(values['discard-state']) }));
      ctx.print(s, () => `${vmStateLine(s)}${values['wait-ssh'] ? `; SSH answers: devvm ssh ${s.name}` : ''}`);
    },
  },
  {
    name: 'stop',
    usage: 'NAME [--force]',
    summary: 'shut it down (--force: kill QEMU at once)',
    options: { force: { type: 'boolean' } },
    positionals: 1,
    async run(ctx, { values, positionals }) {
      const s = await ctx.call(Rpc.vmStop, ctx.withToken({ name: positionals[0]!, force: Boolean(values.force) }));
      ctx.print(s, () => vmStateLine(s));
    },
  },
  {
    name: 'suspend',
    usage: 'NAME',
    summary: 'save its RAM to a file and stop QEMU',
    positionals: 1,
    async run(ctx, { positionals }) {
      const s = await ctx.call(Rpc.vmSuspend, ctx.withToken({ name: positionals[0]! }));
      ctx.print(s, () => `${vmStateLine(s)}; resume with: devvm resume ${s.name}`);
    },
  },
  {
    name: 'resume',
    usage: 'NAME [--wait-ssh] [--timeout SEC] [--discard-state]',
    summary: 'continue a suspended VM where it was',
    options: startOptions,
    positionals: 1,
    async run(ctx, { values, positionals }) {
      const name = positionals[0]!;
      // list, not info: the state is all we need (info also inspects every layer). A
      // missing VM falls through to start, which names the error.
      const current = (await ctx.call(Rpc.vmList)).find((s) => s.name === name);
      const refused = current && refusal('resume', name, current.state);
      if (refused) throw refused;
      const s = await ctx.call(Rpc.vmStart, ctx.withToken({ name, waitSsh: Boolean(values['wait-ssh']), timeoutSec: int('--timeout', values.timeout), discardState: Boolean(values['discard-state']) }));
      ctx.print(s, () => `${vmStateLine(s)}${values['wait-ssh'] ? `; SSH answers: devvm ssh ${s.name}` : ''}`);
    },
  },
  {
    name: 'list',
    usage: '',
    summary: 'every VM, its state and SSH port',
    positionals: 0,
    async run(ctx) {
      const list = await ctx.call(Rpc.vmList);
      const rows = (l: VmSummary[]) => (l.length === 0 ? 'no VMs (create one with: devvm create NAME --image debian-12)' : table([
        ['NAME', 'STATE', 'IMAGE', 'USER', 'SSH', 'SIZE'],
        ...l.map((s) => [s.name, s.state, s.image, s.user, s.sshPort ? `${s.sshHost} (127.0.0.1:${s.sshPort})` : '-', s.diskGiB ? `${s.cpus} CPU, ${s.memoryMiB} MiB, ${s.diskGiB} GiB` : '-']),
      ]));
      // The CLI contract: exactly these fields.
      ctx.print(list.map(({ name, state, image, user, sshHost, sshPort }) => ({ name, state, image, user, sshHost, sshPort })), () => rows(list));
    },
  },
  {
    name: 'info',
    usage: 'NAME',
    summary: 'settings, files and every disk layer',
    positionals: 1,
    async run(ctx, { positionals }) {
      const i = await ctx.call(Rpc.vmInfo, { name: positionals[0]! });
      ctx.print(i, () => [
        `${i.name}: ${i.state}${i.error ? ` (${i.error})` : ''}`,
        `  image ${i.image}, user ${i.user} (${i.fullName}), ${i.cpus} vCPU, ${i.memoryMiB} MiB, disk ${i.diskGiB} GiB`,
        `  ssh ${i.ssh ? `${i.sshHost} -> 127.0.0.1:${i.sshPort}` : 'disabled'}, autologin ${i.autologin ? 'on' : 'off'}, first setup ${i.provisioned ? 'done' : 'pending'}`,
        `  ${i.pid ? `qemu pid ${i.pid} (${i.accelerator})` : 'not running'}; files in ${i.dir}`,
        `  display ${displayText(i.display)}${i.display ? ` (devvm display ${i.name})` : ''}`,
        `  ${idleText(i.idleSuspendMin)}, autostart ${i.autostart ? 'on' : 'off'} (devvm set ${i.name} --idle-suspend MIN|off --autostart on|off)`,
        ...(i.agent ? [`  agent: ${agentText(i.agent)}`] : []),
        `  serial console log: ${i.serialLog}`,
        `  layers (top first, ${bytes(i.layers.reduce((a, l) => a + l.actualSize, 0))} on disk):`,
        table(i.layers.map((l) => layerRow(l, '    '))),
        // An older helper sends no shares.
        ...(i.shares?.length ? ['  shared folders:', ...i.shares.map((s) => `    ${shareText(s)}`)] : []),
        `  ports${i.autoPorts?.on ? ' (guest listeners forwarded automatically)' : ''}:`,
        portsText(i.ports ?? [], i.autoPorts, '    '),
        ...(i.disks.length ? ['  attached disks:', ...i.disks.map((d) => `    ${d.id} ${d.bus}${d.readOnly ? ' ro' : ''} ${d.source}`)] : []),
      ].join('\n'));
    },
  },
  {
    name: 'delete',
    usage: 'NAME [--force]',
    summary: 'remove it and its files (--force: stop it first)',
    options: { force: { type: 'boolean' } },
    positionals: 1,
    async run(ctx, { values, positionals }) {
      await ctx.call(Rpc.vmDelete, { name: positionals[0]!, force: Boolean(values.force) });
      ctx.print({ deleted: positionals[0] }, () => `deleted ${positionals[0]}`);
    },
  },
];
