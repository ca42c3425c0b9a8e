/**
 * `devvm`: a thin client of the helper's RPC (starting the helper when needed).
 * Errors print one line `devvm: <what> (<hint>)` and exit 1; usage errors exit 2;
 * with --json, errors are `{"error": {"code", "message"}}` on stdout.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { MessageConnection, RequestType, RequestType0 } from 'vscode-jsonrpc/node';
import { connect, fromRpcError } from '../shared/client';
import { DevvmError } from '../shared/errors';
import { devvmHome } from '../shared/paths';
import { Notify, Rpc, type RpcErrorData } from '../shared/rpc';
import type { ImageInfo, VmSummary } from '../shared/types';
import * as v from '../shared/validate';
import { ProgressLine } from './progress';

declare const DEVVM_VERSION: string;

class UsageError extends Error {}

const USAGE = `usage: devvm <command> [options]

  image build debian-12 [--name N]            build a base image from Debian packages
  image pull debian-12 [--name N]             download the official cloud image (checksum verified)
  image import FILE|nbd://H:P/E --name N [--kernel K --initrd I] [--copy]
                                              an nbd:// base is used in place, read once per VM
  image list [--json]                         image delete NAME
  create NAME --image N [--user U] [--full-name F] [--password-stdin | --password-file F]
         [--ssh-key PUB]... [--autologin] [--no-ssh] [--cpus N] [--memory MiB] [--disk GiB]
         [--start] [--wait-ssh]
  start NAME [--wait-ssh] [--timeout SEC] [--discard-state]
  stop NAME [--force]                         suspend NAME    resume NAME [--wait-ssh]
  list [--json]                               info NAME [--json]
  delete NAME [--force]                       ssh NAME [-- CMD...]
  snapshot NAME SNAP [--ram] [--delete]       snapshots NAME [--json]
  restore NAME SNAP                           clone SRC DST [--snapshot SNAP] [--start]
  layers [--json]                             the layer tree of every VM
  disk attach NAME FILE|nbd://HOST:PORT/EXPORT [--usb] [--read-only]
  disk detach NAME ID                         disk export NAME [SNAP]    disk unexport NAME
  usb list [--json]                           usb attach|detach NAME DEV (id 1-2.3, VENDOR:PRODUCT, BUS/DEV)
  ssh-config [--include]                      doctor [--json]
  helper status|stop [--stop-vms]`;

type Opts = ParseArgsConfig['options'];

function parse(rawArgv: string[], options: Opts, positionals: number | [number, number]) {
  // parseArgs reads `--cpus -1` as two options; join a negative number to its option so
  // validation can answer "out of range" instead of "ambiguous".
  const argv: string[] = [];
  for (let i = 0; i < rawArgv.length; i++) {
    const a = rawArgv[i]!;
    const next = rawArgv[i + 1];
    if (next !== undefined && /^-\d/.test(next) && options?.[a.replace(/^--/, '')]?.type === 'string') {
      argv.push(`${a}=${next}`);
      i++;
    } else {
      argv.push(a);
    }
  }
  let r;
  try {
    r = parseArgs({ args: argv, options: { ...options, json: { type: 'boolean' } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!.replace(/^TypeError \[\w+\]: /, ''));
  }
  const [min, max] = typeof positionals === 'number' ? [positionals, positionals] : positionals;
  if (r.positionals.length < min) throw new UsageError('missing argument');
  if (r.positionals.length > max) throw new UsageError(`unexpected argument "${r.positionals[max]}"`);
  return { values: r.values as Record<string, string | boolean | string[] | undefined>, positionals: r.positionals };
}

function int(what: string, s: unknown): number | undefined {
  if (s === undefined) return undefined;
  if (typeof s !== 'string' || !/^-?\d+$/.test(s)) throw new UsageError(`${what} must be a whole number, got ${v.preview(s)}`);
  return Number(s);
}

function readPassword(values: Record<string, unknown>): string | undefined {
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

function sshKeyArg(k: string): string {
  // A path to a .pub file or the key itself.
  if (/^(ssh-|ecdsa-|sk-)/.test(k)) return k;
  try {
    return readFileSync(k, 'utf8').trim();
  } catch {
    throw new DevvmError('not-found', `cannot read SSH public key file ${k}`);
  }
}

function human(bytes: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let n = bytes;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n < 10 && i ? n.toFixed(1) : Math.round(n)} ${u[i]}`;
}

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()).join('\n');
}

class Cli {
  private conn: MessageConnection | null = null;
  private progress = new ProgressLine();
  private tokens = new Set<string>();
  json = false;

  constructor(private readonly home: string) {}

  private async rpc(): Promise<MessageConnection> {
    if (!this.conn) {
      this.conn = await connect({ home: this.home, helperScript: path.join(__dirname, 'helper.js') });
      this.conn.onNotification(Notify.progress, (p) => {
        if (this.tokens.has(p.token)) this.progress.update(p.message, p.fraction);
      });
    }
    return this.conn;
  }

  private withToken<T extends object>(p: T): T & { progressToken: string } {
    const token = randomUUID();
    this.tokens.add(token);
    return { ...p, progressToken: token };
  }

  call<R>(type: RequestType0<R, RpcErrorData>): Promise<R>;
  call<P, R>(type: RequestType<P, R, RpcErrorData>, params: P): Promise<R>;
  async call(type: RequestType0<unknown, RpcErrorData> | RequestType<unknown, unknown, RpcErrorData>, params?: unknown): Promise<unknown> {
    const conn = await this.rpc();
    try {
      return await (params === undefined
        ? conn.sendRequest(type as RequestType0<unknown, RpcErrorData>)
        : conn.sendRequest(type as RequestType<unknown, unknown, RpcErrorData>, params));
    } catch (e) {
      throw fromRpcError(e);
    } finally {
      this.progress.done();
    }
  }

  print(value: unknown, text: () => string): void {
    process.stdout.write(this.json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
  }

  close(): void {
    this.conn?.dispose();
  }

  async run(argv: string[]): Promise<number> {
    const [cmd, ...rest] = argv;
    switch (cmd) {
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        return 0;
      case '--version':
        process.stdout.write(`${DEVVM_VERSION}\n`);
        return 0;
      case 'image':
        return this.image(rest);
      case 'create': {
        const { values, positionals } = parse(rest, {
          image: { type: 'string' }, user: { type: 'string' }, 'full-name': { type: 'string' },
          'password-stdin': { type: 'boolean' }, 'password-file': { type: 'string' },
          'ssh-key': { type: 'string', multiple: true }, autologin: { type: 'boolean' }, 'no-ssh': { type: 'boolean' },
          cpus: { type: 'string' }, memory: { type: 'string' }, disk: { type: 'string' },
          start: { type: 'boolean' }, 'wait-ssh': { type: 'boolean' },
        }, 1);
        this.json = Boolean(values.json);
        if (!values.image) throw new UsageError('--image is required');
        if (values['password-stdin'] && values['password-file']) throw new UsageError('use either --password-stdin or --password-file');
        const s = await this.call(Rpc.vmCreate, this.withToken({
          name: positionals[0]!,
          image: values.image as string,
          user: (values.user as string | undefined) ?? defaultUser(),
          fullName: values['full-name'] as string | undefined,
          password: readPassword(values),
          sshKeys: ((values['ssh-key'] as string[] | undefined) ?? []).map(sshKeyArg),
          autologin: Boolean(values.autologin),
          ssh: !values['no-ssh'],
          cpus: int('--cpus', values.cpus),
          memoryMiB: int('--memory', values.memory),
          diskGiB: int('--disk', values.disk),
          start: Boolean(values.start || values['wait-ssh']),
          waitSsh: Boolean(values['wait-ssh']),
        }));
        this.print(s, () => `created ${s.name} (${s.state})${s.state === 'running' && s.sshPort ? `; connect with: devvm ssh ${s.name}` : ''}`);
        return 0;
      }
      case 'start':
      case 'resume': {
        const { values, positionals } = parse(rest, { 'wait-ssh': { type: 'boolean' }, timeout: { type: 'string' }, 'discard-state': { type: 'boolean' } }, 1);
        this.json = Boolean(values.json);
        const name = positionals[0]!;
        // list, not info: the state is all we need (info also inspects every layer). A
        // missing VM falls through to start, which names the error.
        const current = cmd === 'resume' ? (await this.call(Rpc.vmList)).find((s) => s.name === name) : undefined;
        if (current && current.state !== 'suspended') {
          throw new DevvmError('invalid-state', `VM "${name}" is not suspended`, `use "devvm start ${name}"`);
        }
        const s = await this.call(Rpc.vmStart, this.withToken({ name, waitSsh: Boolean(values['wait-ssh']), timeoutSec: int('--timeout', values.timeout), discardState: Boolean(values['discard-state']) }));
        this.print(s, () => `${s.name} is ${s.state}${values['wait-ssh'] ? `; SSH answers: devvm ssh ${s.name}` : ''}`);
        return 0;
      }
      case 'suspend': {
        const { values, positionals } = parse(rest, {}, 1);
        this.json = Boolean(values.json);
        const s = await this.call(Rpc.vmSuspend, this.withToken({ name: positionals[0]! }));
        this.print(s, () => `${s.name} is ${s.state}; resume with: devvm resume ${s.name}`);
        return 0;
      }
      case 'stop': {
        const { values, positionals } = parse(rest, { force: { type: 'boolean' } }, 1);
        this.json = Boolean(values.json);
        const s = await this.call(Rpc.vmStop, this.withToken({ name: positionals[0]!, force: Boolean(values.force) }));
        this.print(s, () => `${s.name} is ${s.state}`);
        return 0;
      }
      case 'delete': {
        const { values, positionals } = parse(rest, { force: { type: 'boolean' } }, 1);
        this.json = Boolean(values.json);
        await this.call(Rpc.vmDelete, { name: positionals[0]!, force: Boolean(values.force) });
        this.print({ deleted: positionals[0] }, () => `deleted ${positionals[0]}`);
        return 0;
      }
      case 'list': {
        const { values } = parse(rest, {}, 0);
        this.json = Boolean(values.json);
        const list = await this.call(Rpc.vmList);
        const rows = (l: VmSummary[]) => (l.length === 0 ? 'no VMs (create one with: devvm create NAME --image debian-12)' : table([
          ['NAME', 'STATE', 'IMAGE', 'USER', 'SSH'],
          ...l.map((s) => [s.name, s.state, s.image, s.user, s.sshPort ? `${s.sshHost} (127.0.0.1:${s.sshPort})` : '-']),
        ]));
        this.print(list.map(({ name, state, image, user, sshHost, sshPort }) => ({ name, state, image, user, sshHost, sshPort })), () => rows(list));
        return 0;
      }
      case 'info': {
        const { values, positionals } = parse(rest, {}, 1);
        this.json = Boolean(values.json);
        const i = await this.call(Rpc.vmInfo, { name: positionals[0]! });
        this.print(i, () => [
          `${i.name}: ${i.state}${i.error ? ` (${i.error})` : ''}`,
          `  image ${i.image}, user ${i.user} (${i.fullName}), ${i.cpus} vCPU, ${i.memoryMiB} MiB, disk ${i.diskGiB} GiB`,
          `  ssh ${i.ssh ? `${i.sshHost} -> 127.0.0.1:${i.sshPort}` : 'disabled'}, autologin ${i.autologin ? 'on' : 'off'}, first setup ${i.provisioned ? 'done' : 'pending'}`,
          `  ${i.pid ? `qemu pid ${i.pid} (${i.accelerator})` : 'not running'}; files in ${i.dir}`,
          '  layers (top first):',
          table(i.layers.map((l) => [`    ${l.role}`, l.file, `${human(l.actualSize)} / ${human(l.virtualSize)}`, l.readOnly ? 'ro' : 'rw', `used by ${l.sharedBy.join(', ')}`, l.snapshots?.length ? `snapshot ${l.snapshots.join(', ')}` : ''])),
          ...(i.disks.length ? ['  attached disks:', ...i.disks.map((d) => `    ${d.id} ${d.bus}${d.readOnly ? ' ro' : ''} ${d.source}`)] : []),
        ].join('\n'));
        return 0;
      }
      case 'snapshot': {
        const { values, positionals } = parse(rest, { ram: { type: 'boolean' }, delete: { type: 'boolean' } }, 2);
        this.json = Boolean(values.json);
        const [name, snapshot] = positionals as [string, string];
        if (values.delete) {
          if (values.ram) throw new UsageError('--ram and --delete do not go together');
          await this.call(Rpc.vmSnapshotDelete, { name, snapshot });
          this.print({ deleted: snapshot }, () => `deleted snapshot ${snapshot} of ${name}`);
          return 0;
        }
        const r = await this.call(Rpc.vmSnapshot, this.withToken({ name, snapshot, ram: Boolean(values.ram) }));
        this.print(r, () => `snapshot ${r.name} of ${name} taken (layer ${r.layer}${r.ram ? ', with RAM' : ''}); restore with: devvm restore ${name} ${r.name}`);
        return 0;
      }
      case 'snapshots': {
        const { values, positionals } = parse(rest, {}, 1);
        this.json = Boolean(values.json);
        const i = await this.call(Rpc.vmInfo, { name: positionals[0]! });
        this.print(i.snapshots, () => (i.snapshots.length === 0 ? `${i.name} has no snapshots (take one with: devvm snapshot ${i.name} NAME)` : table([
          ['NAME', 'RAM', 'LAYER', 'TAKEN'],
          ...i.snapshots.map((s) => [s.name, s.ram ? 'yes' : 'no', s.layer, s.createdAt]),
        ])));
        return 0;
      }
      case 'restore': {
        const { values, positionals } = parse(rest, {}, 2);
        this.json = Boolean(values.json);
        const s = await this.call(Rpc.vmRestore, this.withToken({ name: positionals[0]!, snapshot: positionals[1]! }));
        this.print(s, () => `${s.name} restored to ${positionals[1]} (${s.state})`);
        return 0;
      }
      case 'clone': {
        const { values, positionals } = parse(rest, { snapshot: { type: 'string' }, start: { type: 'boolean' } }, 2);
        this.json = Boolean(values.json);
        const s = await this.call(Rpc.vmClone, this.withToken({ source: positionals[0]!, name: positionals[1]!, snapshot: values.snapshot as string | undefined, start: Boolean(values.start) }));
        this.print(s, () => `cloned ${positionals[0]} to ${s.name} (${s.state}, SSH port ${s.sshPort ?? '-'})`);
        return 0;
      }
      case 'layers': {
        const { values } = parse(rest, {}, 0);
        this.json = Boolean(values.json);
        const nodes = await this.call(Rpc.layerTree);
        const lines: string[] = [];
        const walk = (parent: string | null, depth: number) => {
          for (const n of nodes.filter((x) => x.parent === parent)) {
            const what = [...n.snapshots.map((x) => `snapshot ${x}`), n.usedBy.length ? `in ${n.usedBy.join(', ')}` : 'unused'].join('; ');
            lines.push(`${'  '.repeat(depth)}${n.id} ${human(n.actualSize)} (${what})`);
            walk(n.id, depth + 1);
          }
        };
        for (const image of [...new Set(nodes.map((n) => n.image))]) {
          lines.push(`image ${image}`);
          walk(null, 1);
        }
        this.print(nodes, () => (lines.length ? lines.join('\n') : 'no layers'));
        return 0;
      }
      case 'disk':
        return this.disk(rest);
      case 'usb': {
        const [sub, ...args] = rest;
        if (sub === 'list') {
          const { values } = parse(args, {}, 0);
          this.json = Boolean(values.json);
          const l = await this.call(Rpc.usbList);
          this.print(l, () => (l.length === 0 ? 'no USB devices on this host' : table([
            ['ID', 'VENDOR:PRODUCT', 'NAME', 'NODE', 'ATTACHED TO'],
            ...l.map((d) => [d.id, `${d.vendorId}:${d.productId}`, [d.manufacturer, d.product].filter(Boolean).join(' ') || '-', d.devnode, d.attachedTo ?? '-']),
          ])));
          return 0;
        }
        if (sub !== 'attach' && sub !== 'detach') throw new UsageError(sub ? `unknown usb command "${sub}"` : 'missing usb command');
        const { values, positionals } = parse(args, {}, 2);
        this.json = Boolean(values.json);
        const params = { name: positionals[0]!, device: positionals[1]! };
        if (sub === 'attach') {
          const d = await this.call(Rpc.usbAttach, params);
          this.print(d, () => `attached USB ${d.id} (${d.product ?? `${d.vendorId}:${d.productId}`}) to ${params.name}`);
        } else {
          await this.call(Rpc.usbDetach, params);
          this.print({ detached: params.device }, () => `detached USB ${params.device} from ${params.name}`);
        }
        return 0;
      }
      case 'ssh': {
        const dash = rest.indexOf('--');
        const own = dash >= 0 ? rest.slice(0, dash) : rest;
        const remote = dash >= 0 ? rest.slice(dash + 1) : [];
        const { positionals } = parse(own, {}, 1);
        const t = await this.call(Rpc.vmSshTarget, { name: positionals[0]! });
        this.close();
        return new Promise((resolve) => {
          const child = spawn('ssh', ['-F', t.configFile, t.host, ...(remote.length ? ['--', ...remote] : [])], { stdio: 'inherit' });
          child.on('error', () => resolve(127));
          child.on('exit', (code, sig) => resolve(code ?? (sig ? 128 + (os.constants.signals[sig] ?? 0) : 1)));
        });
      }
      case 'ssh-config': {
        const { values } = parse(rest, { include: { type: 'boolean' }, 'user-config': { type: 'string' } }, 0);
        this.json = Boolean(values.json);
        const file = path.join(this.home, 'ssh_config');
        if (!values.include) {
          this.print({ file }, () => `${file}\nadd it to your ssh config with: devvm ssh-config --include`);
          return 0;
        }
        const r = await this.call(Rpc.sshInclude, { userConfig: values['user-config'] as string | undefined });
        this.print(r, () => (r.changed ? `added "Include ${file}" to ${r.file}${r.backup ? ` (backup: ${r.backup})` : ''}` : `${r.file} already includes ${file}`));
        return 0;
      }
      case 'doctor': {
        const { values } = parse(rest, {}, 0);
        this.json = Boolean(values.json);
        const d = await this.call(Rpc.doctor);
        this.print(d, () => [
          `accelerator: ${d.accelerator.name} (${d.accelerator.reason})`,
          `native addon: ${d.nativeAddon.loaded ? 'loaded' : 'not loaded'} (${d.nativeAddon.detail})`,
          ...d.checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}${!c.ok && c.fix ? ` -> ${c.fix}` : ''}`),
        ].join('\n'));
        return 0;
      }
      case 'helper': {
        const { values, positionals } = parse(rest, { 'stop-vms': { type: 'boolean' } }, 1);
        this.json = Boolean(values.json);
        if (positionals[0] === 'status') {
          const i = await this.call(Rpc.ping);
          this.print(i, () => `helper ${i.pid} (devvm ${i.version}) serving ${i.home} since ${i.startedAt}`);
        } else if (positionals[0] === 'stop') {
          // Return only once the helper is gone (its socket closes as it exits), so a caller
          // may remove DEVVM_HOME or start another helper right after.
          const conn = await this.rpc();
          const gone = new Promise<void>((resolve) => conn.onClose(() => resolve()));
          await this.call(Rpc.shutdown, { stopVms: Boolean(values['stop-vms']) });
          await Promise.race([gone, new Promise((r) => setTimeout(r, 120_000).unref())]);
          this.print({ stopped: true }, () => 'helper stopped');
        } else {
          throw new UsageError(`unknown helper command "${positionals[0]}"`);
        }
        return 0;
      }
      default:
        throw new UsageError(`unknown command "${cmd}"`);
    }
  }

  private async disk(argv: string[]): Promise<number> {
    const [sub, ...rest] = argv;
    switch (sub) {
      case 'attach': {
        const { values, positionals } = parse(rest, { usb: { type: 'boolean' }, 'read-only': { type: 'boolean' } }, 2);
        this.json = Boolean(values.json);
        const src = positionals[1]!;
        const d = await this.call(Rpc.diskAttach, { name: positionals[0]!, source: src.startsWith('nbd://') ? src : path.resolve(src), usb: Boolean(values.usb), readOnly: Boolean(values['read-only']) });
        this.print(d, () => `attached ${d.source} to ${positionals[0]} as ${d.id} (${d.bus}${d.readOnly ? ', read-only' : ''}); detach with: devvm disk detach ${positionals[0]} ${d.id}`);
        return 0;
      }
      case 'detach': {
        const { values, positionals } = parse(rest, {}, 2);
        this.json = Boolean(values.json);
        await this.call(Rpc.diskDetach, { name: positionals[0]!, id: positionals[1]! });
        this.print({ detached: positionals[1] }, () => `detached ${positionals[1]} from ${positionals[0]}`);
        return 0;
      }
      case 'export': {
        const { values, positionals } = parse(rest, {}, [1, 2]);
        this.json = Boolean(values.json);
        const e = await this.call(Rpc.diskExport, this.withToken({ name: positionals[0]!, snapshot: positionals[1] }));
        this.print(e, () => `serving layer ${e.layer} of ${e.vm} read-only at ${e.uri} (try: qemu-img info ${e.uri}); stop with: devvm disk unexport ${e.vm}`);
        return 0;
      }
      case 'unexport': {
        const { values, positionals } = parse(rest, {}, 1);
        this.json = Boolean(values.json);
        await this.call(Rpc.diskUnexport, { name: positionals[0]! });
        this.print({ unexported: positionals[0] }, () => `stopped the NBD export of ${positionals[0]}`);
        return 0;
      }
      default:
        throw new UsageError(sub ? `unknown disk command "${sub}"` : 'missing disk command');
    }
  }

  private async image(argv: string[]): Promise<number> {
    const [sub, ...rest] = argv;
    switch (sub) {
      case 'build':
      case 'pull': {
        const { values, positionals } = parse(rest, { name: { type: 'string' } }, 1);
        this.json = Boolean(values.json);
        const i = await this.call(sub === 'build' ? Rpc.imageBuild : Rpc.imagePull, this.withToken({ recipe: positionals[0]!, name: values.name as string | undefined }));
        this.print(i, () => `image ${i.name} ready: ${i.file} (${human(i.actualSize)}, sha256 ${i.sha256?.slice(0, 16)}…)`);
        return 0;
      }
      case 'import': {
        const { values, positionals } = parse(rest, { name: { type: 'string' }, kernel: { type: 'string' }, initrd: { type: 'string' }, copy: { type: 'boolean' } }, 1);
        this.json = Boolean(values.json);
        if (!values.name) throw new UsageError('--name is required');
        const abs = (p: unknown) => (typeof p === 'string' && !p.includes('://') ? path.resolve(p) : (p as string | undefined));
        const i = await this.call(
          Rpc.imageImport,
          this.withToken({ file: abs(positionals[0])!, name: values.name as string, kernel: abs(values.kernel), initrd: abs(values.initrd), copy: values.copy === true || undefined }),
        );
        this.print(i, () => (i.sha256 ? `image ${i.name} imported: ${i.file} sha256 ${i.sha256}` : `image ${i.name} uses the base served at ${i.file}; each VM reads it once into its cache layer`));
        return 0;
      }
      case 'list': {
        const { values } = parse(rest, {}, 0);
        this.json = Boolean(values.json);
        const l = await this.call(Rpc.imageList);
        this.print(l, () => (l.length === 0 ? 'no images (build one with: devvm image build debian-12)' : table([
          ['NAME', 'SIZE', 'VIRTUAL', 'USED BY', 'SOURCE'],
          ...l.map((i: ImageInfo) => [i.name, human(i.actualSize), human(i.virtualSize), i.usedBy.join(',') || '-', i.source]),
        ])));
        return 0;
      }
      case 'delete': {
        const { values, positionals } = parse(rest, {}, 1);
        this.json = Boolean(values.json);
        await this.call(Rpc.imageDelete, { name: positionals[0]! });
        this.print({ deleted: positionals[0] }, () => `deleted image ${positionals[0]}`);
        return 0;
      }
      default:
        throw new UsageError(sub ? `unknown image command "${sub}"` : 'missing image command');
    }
  }
}

async function main(): Promise<void> {
  const cli = new Cli(devvmHome());
  const argv = process.argv.slice(2);
  let code: number;
  try {
    code = await cli.run(argv);
  } catch (e) {
    const json = cli.json || argv.includes('--json');
    if (e instanceof UsageError) {
      if (json) process.stdout.write(`${JSON.stringify({ error: { code: 'usage', message: e.message } })}\n`);
      else process.stderr.write(`devvm: ${e.message} (see "devvm --help")\n`);
      code = 2;
    } else {
      const err = e instanceof DevvmError ? e : fromRpcError(e);
      if (json) process.stdout.write(`${JSON.stringify({ error: { code: err.code, message: err.oneLine() } })}\n`);
      else process.stderr.write(`devvm: ${err.oneLine()}\n`);
      code = 1;
    }
  }
  cli.close();
  process.exitCode = code;
}

void main();
