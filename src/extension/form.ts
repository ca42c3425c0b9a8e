/**
 * The Create VM form's model: field checks (the helper's own rules from
 * src/shared/validate.ts), the short-name derivation, and the parsing of every message a
 * webview sends. Runs in the webview (live feedback) and in the extension host (which
 * trusts nothing the webview says). No `vscode` and no DOM imports.
 */
import { displaySize } from '../shared/display';
import { DevvmError } from '../shared/errors';
import type { CreateParams } from '../shared/rpc';
import * as v from '../shared/validate';
import { parsePortList } from '../shared/portspec';

/** One row of the Shared folders field; an empty guest path means the host's path. */
export interface ShareRow {
  hostPath: string;
  guestPath: string;
  readOnly: boolean;
}

export interface CreateForm {
  image: string;
  name: string;
  fullName: string;
  user: string;
  password: string;
  confirm: string;
  autologin: boolean;
  ssh: boolean;
  cpus: string;
  memoryMiB: string;
  diskGiB: string;
  /** A screen (virtio-vga, VNC on a unix socket) for the Display tab. */
  display: boolean;
  /** "auto" (follows the Display tab) or "WxH"; only read when `display` is on. */
  displaySize: string;
  /** Host folders shared into the guest (create's `shares`). */
  shares: ShareRow[];
  /** Static forwards, "HOST:GUEST" separated by spaces or commas (create's `ports`). */
  ports: string;
  connect: boolean;
}

export type Field = keyof CreateForm;
export type FormErrors = Partial<Record<Field, string>>;

const STRING_FIELDS = ['image', 'name', 'fullName', 'user', 'password', 'confirm', 'cpus', 'memoryMiB', 'diskGiB', 'displaySize', 'ports'] as const;
const BOOL_FIELDS = ['autologin', 'ssh', 'display', 'connect'] as const;
export const FIELDS: readonly Field[] = [...STRING_FIELDS, ...BOOL_FIELDS, 'shares'];
/** create's own limit (Params.create). */
export const MAX_SHARES = 32;

export interface FormContext {
  images: readonly string[];
  existing: readonly string[];
  hostCpus?: number;
  hostMiB?: number;
}

/**
 * "Zoë Müller-Lüdenscheidt" -> "zoemuller-ludenscheidt": lowercase ASCII letters, digits,
 * "-" and "_" (what useradd accepts), diacritics folded, at most 32 characters, and never
 * starting with a digit or "-".
 */
export function deriveShortName(fullName: string): string {
  const folded = fullName
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/ß/g, 'ss')
    .replace(/[^a-z0-9_-]/g, '')
    .replace(/^[^a-z_]+/, '');
  return folded.slice(0, 32).replace(/-+$/, '');
}

/** The error text a rule throws, as shown beside a field. */
function check(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    if (e instanceof DevvmError) return e.hint ? `${e.message} — ${e.hint}` : e.message;
    return String(e);
  }
}

/** create's `shares` from the form's rows, or the first row's problem ("shared folder 2: …"). */
export function checkShares(rows: readonly ShareRow[]): { shares?: NonNullable<CreateParams['shares']>; error?: string } {
  if (rows.length > MAX_SHARES) return { error: `${rows.length} shared folders is more than ${MAX_SHARES}` };
  const shares: NonNullable<CreateParams['shares']> = [];
  for (const [i, r] of rows.entries()) {
    const at = `shared folder ${i + 1}`;
    if (!r.hostPath.trim()) return { error: `${at}: pick a host folder` };
    const bad = check(() => v.absolutePath('host folder', r.hostPath.trim())) ?? (r.guestPath.trim() ? check(() => v.absolutePath('guest folder', r.guestPath.trim())) : undefined);
    if (bad) return { error: `${at}: ${bad}` };
    const guestPath = r.guestPath.trim() || r.hostPath.trim();
    if (shares.some((x) => (x.guestPath ?? x.hostPath) === guestPath)) return { error: `${at}: ${guestPath} in the guest is shared twice` };
    shares.push({ hostPath: r.hostPath.trim(), guestPath, readOnly: r.readOnly });
  }
  return { shares };
}

export interface Checked {
  errors: FormErrors;
  /** Present when there are no errors: ready for vm/create (plus the connect choice). */
  params?: CreateParams;
  connect: boolean;
}

export function checkForm(f: CreateForm, ctx: FormContext): Checked {
  const errors: FormErrors = {};
  const set = (field: Field, msg: string | undefined) => {
    if (msg && !errors[field]) errors[field] = msg;
  };
  set('image', f.image ? (ctx.images.includes(f.image) ? check(() => v.imageName(f.image)) : `no image named "${f.image}"`) : 'pick an image (build or import one first)');
  set('name', check(() => v.vmName(f.name)));
  if (ctx.existing.includes(f.name)) set('name', `a VM named "${f.name}" already exists`);
  set('fullName', check(() => v.fullName(f.fullName)));
  set('user', check(() => v.userName(f.user)));
  if (f.password || f.confirm) {
    set('password', check(() => v.password(f.password)));
    if (f.password !== f.confirm) set('confirm', 'the passwords do not match');
  }
  // validate.cpus types its limit as the literal 64 (its default); any host count is meant.
  set('cpus', check(() => v.cpus(f.cpus, ctx.hostCpus as 64 | undefined)));
  set('memoryMiB', check(() => v.memoryMiB(f.memoryMiB, ctx.hostMiB)));
  set('diskGiB', check(() => v.diskGiB(f.diskGiB)));
  if (f.display) set('displaySize', check(() => displaySize(f.displaySize.trim().toLowerCase())));
  if (f.connect && !f.ssh) set('connect', 'connecting needs SSH on');
  const shares = checkShares(f.shares);
  set('shares', shares.error);
  let ports: ReturnType<typeof parsePortList> = [];
  set('ports', check(() => (ports = parsePortList(f.ports))));
  if (Object.keys(errors).length) return { errors, connect: f.connect };
  return {
    errors,
    connect: f.connect,
    params: {
      name: f.name,
      image: f.image,
      user: f.user,
      fullName: v.fullName(f.fullName) || undefined,
      password: f.password || undefined,
      autologin: f.autologin,
      ssh: f.ssh,
      cpus: v.cpus(f.cpus),
      memoryMiB: v.memoryMiB(f.memoryMiB),
      diskGiB: v.diskGiB(f.diskGiB),
      ...(f.display ? { display: true, displaySize: displaySize(f.displaySize.trim().toLowerCase()) } : {}),
      ...(shares.shares?.length ? { shares: shares.shares } : {}),
      ...(ports.length ? { ports } : {}),
    },
  };
}

// ---- messages --------------------------------------------------------------

/** Webview -> extension. */
export type FromWebview = { type: 'ready' } | { type: 'cancel' } | { type: 'submit'; form: CreateForm } | { type: 'pickFolder'; row: number };

export interface InitMessage {
  type: 'init';
  images: { name: string; detail: string }[];
  existing: string[];
  defaults: Omit<CreateForm, 'password' | 'confirm'>;
  hostCpus: number;
  hostMiB: number;
}

/** Extension -> webview. */
export type ToWebview =
  | InitMessage
  | { type: 'busy'; message: string }
  | { type: 'failed'; message: string; errors?: FormErrors }
  | { type: 'existing'; names: string[] }
  /** The host folder picked for a Shared folders row (the page asked with `pickFolder`). */
  | { type: 'folderPicked'; row: number; path: string };

/** A Shared folders row's id: the page numbers its rows, so a late answer finds its row. */
const MAX_ROW_ID = 1_000_000;

const MAX_FIELD = 4096;

/** Parses an untrusted message from the webview; null for anything not exactly as expected. */
export function parseFromWebview(msg: unknown): FromWebview | null {
  if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return null;
  const m = msg as Record<string, unknown>;
  if (m.type === 'ready' || m.type === 'cancel') return { type: m.type };
  if (m.type === 'pickFolder') {
    if (Object.keys(m).length !== 2 || !Number.isSafeInteger(m.row) || (m.row as number) < 0 || (m.row as number) > MAX_ROW_ID) return null;
    return { type: 'pickFolder', row: m.row as number };
  }
  if (m.type !== 'submit' || !m.form || typeof m.form !== 'object' || Array.isArray(m.form)) return null;
  const raw = m.form as Record<string, unknown>;
  const form: Partial<CreateForm> = {};
  for (const k of STRING_FIELDS) {
    const x = raw[k];
    if (typeof x !== 'string' || x.length > MAX_FIELD) return null;
    form[k] = x;
  }
  for (const k of BOOL_FIELDS) {
    const x = raw[k];
    if (typeof x !== 'boolean') return null;
    form[k] = x;
  }
  const shares = parseShareRows(raw.shares);
  if (!shares) return null;
  form.shares = shares;
  if (Object.keys(raw).some((k) => !FIELDS.includes(k as Field))) return null;
  return { type: 'submit', form: form as CreateForm };
}

/** The Shared folders rows of a submit: at most MAX_SHARES, each exactly {hostPath, guestPath, readOnly}. */
function parseShareRows(x: unknown): ShareRow[] | null {
  if (!Array.isArray(x) || x.length > MAX_SHARES) return null;
  const rows: ShareRow[] = [];
  for (const r of x as unknown[]) {
    if (!r || typeof r !== 'object' || Array.isArray(r)) return null;
    const o = r as Record<string, unknown>;
    if (Object.keys(o).length !== 3 || typeof o.hostPath !== 'string' || typeof o.guestPath !== 'string' || typeof o.readOnly !== 'boolean') return null;
    if (o.hostPath.length > MAX_FIELD || o.guestPath.length > MAX_FIELD) return null;
    rows.push({ hostPath: o.hostPath, guestPath: o.guestPath, readOnly: o.readOnly });
  }
  return rows;
}
