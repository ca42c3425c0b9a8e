/**
 * The Create VM form inside its webview. The markup (labels, fields) comes from the
 * extension's HTML; this script fills it from the `init` message, validates live with the
 * helper's own rules, and posts `submit` / `cancel`. The extension checks everything again.
 */
import '@vscode-elements/elements/dist/vscode-button/index.js';
import '@vscode-elements/elements/dist/vscode-checkbox/index.js';
import '@vscode-elements/elements/dist/vscode-form-group/index.js';
import '@vscode-elements/elements/dist/vscode-form-helper/index.js';
import '@vscode-elements/elements/dist/vscode-label/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';
import '@vscode-elements/elements/dist/vscode-progress-ring/index.js';
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-textfield/index.js';
import { checkForm, deriveShortName, MAX_SHARES, type CreateForm, type Field, type FormErrors, type InitMessage, type ShareRow, type ToWebview } from '../src/extension/form';

// validate.password() measures UTF-8 bytes with Node's Buffer; a webview has TextEncoder.
const g = globalThis as unknown as { Buffer?: { byteLength(s: string): number } };
g.Buffer ??= { byteLength: (s: string) => new TextEncoder().encode(s).length };

interface VsCodeApi {
  postMessage(msg: unknown): void;
  getState(): unknown;
  setState(s: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;
const vscode = acquireVsCodeApi();

type Input = HTMLElement & { value: string; invalid: boolean; disabled: boolean };
type Check = HTMLElement & { checked: boolean; invalid: boolean; disabled: boolean };

const TEXT: readonly Field[] = ['name', 'fullName', 'user', 'password', 'confirm', 'cpus', 'memoryMiB', 'diskGiB', 'displaySize', 'ports'];
const CHECKS: readonly Field[] = ['autologin', 'ssh', 'display', 'connect'];

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el as T;
};

let ctx: InitMessage | null = null;
/** Fields the user has left (or all after a submit attempt): only those show errors. */
const touched = new Set<Field>();
/** The short name follows the full name until the user types their own. */
let userEdited = false;
let busy = false;

// ---- Shared folders rows ----------------------------------------------------------
// Built with createElement and textContent only: paths are data, never markup.

/** Row ids, so the host's answer to a folder pick finds its row after others were removed. */
let nextRow = 0;
const rowEl = (id: number) => document.querySelector<HTMLElement>(`.share-row[data-row="${id}"]`);

function shareRows(): ShareRow[] {
  return [...document.querySelectorAll<HTMLElement>('.share-row')].map((r) => ({
    hostPath: r.querySelector<Input>('.host')!.value.trim(),
    guestPath: r.querySelector<Input>('.guest')!.value.trim(),
    readOnly: r.querySelector<Check>('.ro')!.checked,
  }));
}

function addRow(row: ShareRow, id = nextRow++): void {
  nextRow = Math.max(nextRow, id + 1);
  const r = document.createElement('div');
  r.className = 'share-row';
  r.dataset.row = String(id);
  const host = document.createElement('vscode-textfield') as unknown as Input;
  host.className = 'host';
  host.setAttribute('aria-label', 'Host folder');
  host.setAttribute('placeholder', '/path/on/this/host');
  host.value = row.hostPath;
  const browse = document.createElement('vscode-button');
  browse.setAttribute('secondary', '');
  browse.className = 'browse';
  browse.textContent = 'Browse…';
  browse.addEventListener('click', () => vscode.postMessage({ type: 'pickFolder', row: id }));
  const guest = document.createElement('vscode-textfield') as unknown as Input;
  guest.className = 'guest';
  guest.setAttribute('aria-label', 'Guest folder');
  guest.setAttribute('placeholder', 'in the guest: the same path');
  guest.value = row.guestPath;
  const opts = document.createElement('div');
  opts.className = 'opts';
  const ro = document.createElement('vscode-checkbox') as unknown as Check;
  ro.className = 'ro';
  ro.textContent = 'Read-only';
  ro.checked = row.readOnly;
  const remove = document.createElement('vscode-button');
  remove.setAttribute('secondary', '');
  remove.className = 'remove';
  remove.textContent = 'Remove';
  remove.addEventListener('click', () => {
    r.remove();
    touched.add('shares');
    validate();
  });
  opts.append(ro, remove);
  r.append(host, browse, guest, opts);
  for (const el of [host, guest, ro]) {
    el.addEventListener('input', () => (touched.add('shares'), validate()));
    el.addEventListener('change', () => (touched.add('shares'), validate()));
  }
  $('shares').append(r);
  updateShareAdd();
}

function updateShareAdd(): void {
  $<Input>('share-add').disabled = busy || document.querySelectorAll('.share-row').length >= MAX_SHARES;
}

function folderPicked(id: number, path: string): void {
  const r = rowEl(id);
  if (r) r.querySelector<Input>('.host')!.value = path;
  else addRow({ hostPath: path, guestPath: '', readOnly: false }, id);
  touched.add('shares');
  validate();
}

function read(): CreateForm {
  const text = (f: Field) => $<Input>(f).value;
  const check = (f: Field) => $<Check>(f).checked;
  return {
    image: $<Input>('image').value,
    name: text('name').trim(),
    fullName: text('fullName'),
    user: text('user').trim(),
    password: text('password'),
    confirm: text('confirm'),
    autologin: check('autologin'),
    ssh: check('ssh'),
    cpus: text('cpus').trim(),
    memoryMiB: text('memoryMiB').trim(),
    diskGiB: text('diskGiB').trim(),
    display: check('display'),
    displaySize: text('displaySize').trim(),
    shares: shareRows(),
    ports: text('ports').trim(),
    connect: check('connect'),
  };
}

function show(errors: FormErrors, all: boolean): boolean {
  const fields: Field[] = ['image', ...TEXT, ...CHECKS, 'shares'];
  const shown: string[] = [];
  for (const f of fields) {
    const msg = all || touched.has(f) ? errors[f] : undefined;
    const el = $<Input>(f);
    el.invalid = Boolean(msg);
    const help = document.getElementById(`${f}-error`);
    if (help) help.textContent = msg ?? '';
    if (msg) shown.push(msg);
  }
  // A share's error names its row ("shared folder 2: …"): that row's fields are marked.
  const bad = /^shared folder (\d+):/.exec(all || touched.has('shares') ? errors.shares ?? '' : '');
  document.querySelectorAll<HTMLElement>('.share-row').forEach((r, i) => {
    for (const t of r.querySelectorAll<Input>('vscode-textfield')) t.invalid = Number(bad?.[1]) === i + 1;
  });
  $('summary').textContent = all && shown.length ? `${shown.length} field${shown.length === 1 ? ' needs' : 's need'} attention: ${shown[0]}` : '';
  return Object.keys(errors).length === 0;
}

function validate(all = false): ReturnType<typeof checkForm> | null {
  if (!ctx) return null;
  const r = checkForm(read(), { images: ctx.images.map((i) => i.name), existing: ctx.existing, hostCpus: ctx.hostCpus, hostMiB: ctx.hostMiB });
  show(r.errors, all);
  // The size only means something with a display.
  if (!busy) $<Input>('displaySize').disabled = !$<Check>('display').checked;
  const { password: _p, confirm: _c, ...keep } = read();
  vscode.setState({ form: keep, userEdited });
  return r;
}

function setBusy(message: string | null): void {
  busy = message !== null;
  for (const f of [...TEXT, ...CHECKS, 'image', 'create']) $<Input>(f).disabled = busy;
  for (const el of document.querySelectorAll<Input>('.share-row vscode-textfield, .share-row vscode-checkbox, .share-row vscode-button')) el.disabled = busy;
  updateShareAdd();
  $('busy').hidden = !busy;
  $('busy-text').textContent = message ?? '';
}

function init(m: InitMessage): void {
  ctx = m;
  const select = $<Input>('image');
  select.replaceChildren(
    ...m.images.map((i) => {
      const o = document.createElement('vscode-option');
      o.setAttribute('value', i.name);
      o.setAttribute('description', i.detail);
      o.textContent = i.name;
      return o;
    }),
  );
  $('no-images').hidden = m.images.length > 0;
  const saved = vscode.getState() as { form?: Partial<CreateForm>; userEdited?: boolean } | undefined;
  const values: Partial<CreateForm> = { ...m.defaults, ...(saved?.form ?? {}) };
  userEdited = saved?.userEdited ?? false;
  for (const f of TEXT) {
    const v = values[f];
    if (typeof v === 'string') $<Input>(f).value = v;
  }
  for (const f of CHECKS) {
    const v = values[f];
    if (typeof v === 'boolean') $<Check>(f).checked = v;
  }
  $('shares').replaceChildren();
  for (const row of Array.isArray(values.shares) ? values.shares.slice(0, MAX_SHARES) : []) addRow(row);
  const image = typeof values.image === 'string' && m.images.some((i) => i.name === values.image) ? values.image : m.images[0]?.name ?? '';
  // Options upgrade asynchronously; set the value once the select has seen them.
  void customElements.whenDefined('vscode-single-select').then(() => requestAnimationFrame(() => {
    select.value = image;
    validate();
  }));
  $<Input>('cpus').setAttribute('max', String(m.hostCpus));
  $('cpus-help').textContent = `1 to ${m.hostCpus} (this host's CPUs)`;
  $('memoryMiB-help').textContent = `256 MiB to ${m.hostMiB} MiB`;
  validate();
  $<Input>('name').focus();
}

window.addEventListener('message', (e: MessageEvent) => {
  const m = e.data as ToWebview;
  if (!m || typeof m !== 'object') return;
  switch (m.type) {
    case 'init':
      init(m);
      break;
    case 'busy':
      setBusy(m.message);
      break;
    case 'folderPicked':
      if (typeof m.row === 'number' && typeof m.path === 'string') folderPicked(m.row, m.path);
      break;
    case 'existing':
      if (ctx) ctx.existing = m.names;
      validate();
      break;
    case 'failed':
      setBusy(null);
      $('summary').textContent = m.message;
      if (m.errors) {
        for (const f of Object.keys(m.errors) as Field[]) touched.add(f);
        show(m.errors, true);
      }
      break;
  }
});

for (const f of ['image', ...TEXT, ...CHECKS] as Field[]) {
  const el = $(f);
  const onEdit = () => {
    if (f === 'fullName' && !userEdited) $<Input>('user').value = deriveShortName($<Input>('fullName').value);
    if (f === 'user') {
      userEdited = $<Input>('user').value !== '';
      touched.add('user');
    }
    if (f === 'confirm' || CHECKS.includes(f) || f === 'image') touched.add(f);
    validate();
  };
  el.addEventListener('input', onEdit);
  el.addEventListener('change', onEdit);
  el.addEventListener('blur', () => {
    touched.add(f);
    if (f === 'fullName') touched.add('user');
    validate();
  });
}

$('form').addEventListener('submit', (e) => {
  e.preventDefault();
  if (busy) return;
  const r = validate(true);
  if (!r || !r.params) {
    const first = (['image', ...TEXT, ...CHECKS] as Field[]).find((f) => r?.errors[f]);
    if (first) $(first).focus();
    return;
  }
  vscode.postMessage({ type: 'submit', form: read() });
});
$('create').addEventListener('click', () => $<HTMLFormElement>('form').requestSubmit());
// Custom elements do not trigger a form's implicit submission: Enter in a field submits here.
$('form').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.isComposing && (e.target as HTMLElement).tagName === 'VSCODE-TEXTFIELD') {
    e.preventDefault();
    $<HTMLFormElement>('form').requestSubmit();
  }
});
$('cancel').addEventListener('click', () => vscode.postMessage({ type: 'cancel' }));
$('share-add').addEventListener('click', () => vscode.postMessage({ type: 'pickFolder', row: nextRow++ }));

vscode.postMessage({ type: 'ready' });
