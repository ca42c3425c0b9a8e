/**
 * The helper's RPC protocol, declared once. Helper, CLI and extension import these
 * types, so a request's parameters and result are checked end to end by the compiler.
 * Transport: vscode-jsonrpc over the helper's unix socket (mode 0600).
 */
import { NotificationType, NotificationType0, RequestType, RequestType0 } from 'vscode-jsonrpc';
import { displaySize } from './display';
import { idleSetting } from './idle';
import * as S from './schema';
import * as v from './validate';
import type { AttachedDisk, DisplayInfo, DisplayResizeResult, DoctorReport, HelperInfo, HostUsbDevice, ImageInfo, LayerNode, NbdExport, PortForward, PortStatus, ProvisionResult, Screenshot, ShareInfo, SnapshotInfo, VmInfo, VmSummary } from './types';

/** Error data attached to every ResponseError the helper sends. */
export interface RpcErrorData {
  code: import('./errors').ErrorCode;
  hint?: string;
}

/** Long requests may carry a token; the helper then sends `progress` notifications with it. */
const withProgress = { progressToken: S.optional(S.text(200)) };
export type WithProgress = S.ObjectOf<typeof withProgress>;

const vm = S.rule(v.vmName);
const snapshot = S.rule(v.snapshotName);
const format = S.optional(S.oneOf('qcow2', 'raw'));

/** A share as asked for: guestPath defaults to hostPath. */
const share = {
  hostPath: S.rule((x) => v.absolutePath('host folder', x)),
  guestPath: S.optional(S.rule((x) => v.absolutePath('guest folder', x))),
  readOnly: S.optional(S.bool),
};
/** A static forward as asked for: protocol defaults to tcp, hostAddress to 127.0.0.1. */
const port = {
  protocol: S.optional(S.oneOf('tcp', 'udp')),
  hostAddress: S.optional(S.text(64)),
  hostPort: S.int(1, 65535),
  guestPort: S.int(1, 65535),
};

/** Where a VM made by `devvm up` came from (VmOrigin). */
const origin = S.object({
  dir: S.rule((x) => v.absolutePath('folder', x)),
  manifestHash: S.text(128),
  fields: S.optional(S.record(/^[A-Za-z:]{1,40}$/, S.text(128), 64)),
  createDone: S.optional(S.bool),
});

/** A provisioning step: its text goes to the guest on stdin, never on a command line. */
const provisionStep = {
  label: S.text(300),
  as: S.oneOf('root', 'user'),
  script: S.text(1024 * 1024),
  files: S.optional(S.rule((x) => v.absolutePath('files folder', x))),
};

// Every request's parameters, declared once: clients get the types, the helper parses
// each message with the schema before its handler runs.
export const Params = {
  name: S.object({ name: vm }),
  create: S.object({
    ...withProgress,
    name: vm,
    image: S.rule(v.imageName),
    user: S.rule(v.userName),
    fullName: S.optional(S.rule(v.fullName)),
    /** Plain text, sent over the 0600 socket only; the helper keeps just its SHA-512 crypt hash. */
    password: S.optional(S.rule(v.password)),
    sshKeys: S.optional(S.list(S.rule(v.sshPublicKey), 32)),
    autologin: S.optional(S.bool),
    ssh: S.optional(S.bool),
    cpus: S.optional(S.rule((x) => v.cpus(x))),
    memoryMiB: S.optional(S.rule((x) => v.memoryMiB(x))),
    diskGiB: S.optional(S.rule(v.diskGiB)),
    start: S.optional(S.bool),
    waitSsh: S.optional(S.bool),
    /** A virtio-vga screen with a VNC server on a 0600 unix socket (the Display tab). */
    display: S.optional(S.bool),
    /** "auto" (default: follows the Display tab) or "WxH"; implies `display`. */
    displaySize: S.optional(S.rule(displaySize)),
    /** Suspend after this many minutes without an SSH session or console client; "off"; default: the helper's. */
    idleSuspend: S.optional(S.rule(idleSetting)),
    /** Started (or resumed) whenever the helper starts. */
    autostart: S.optional(S.bool),
    shares: S.optional(S.list(S.object(share), 32)),
    ports: S.optional(S.list(S.object(port), 64)),
    /** Made by `devvm up`: the folder and devvm.json it came from. */
    origin: S.optional(origin),
  }),
  /** Changes a stopped VM's machine (a suspended one keeps the machine its saved state needs). */
  set: S.object({
    name: vm,
    display: S.optional(S.bool),
    displaySize: S.optional(S.rule(displaySize)),
    /** Settings any VM may change in any state (no machine change): idle suspend and autostart. */
    idleSuspend: S.optional(S.rule(idleSetting)),
    autostart: S.optional(S.bool),
    /** Machine size (stopped VMs only); the disk only grows, the guest's root filesystem follows at the next boot. */
    cpus: S.optional(S.rule((x) => v.cpus(x))),
    memoryMiB: S.optional(S.rule((x) => v.memoryMiB(x))),
    diskGiB: S.optional(S.rule(v.diskGiB)),
    /** `devvm up --apply`: the devvm.json the VM now follows. */
    origin: S.optional(origin),
  }),
  /**
   * Runs steps in the running guest over SSH, in order, as the user or as root (sudo);
   * output goes to the client as `output` notifications with the progress token. A failing
   * step ends the call with its label, exit code and line.
   */
  provision: S.object({
    ...withProgress,
    name: vm,
    steps: S.list(S.object(provisionStep), 200),
    env: S.optional(S.record(/^[A-Za-z_][A-Za-z0-9_]*$/, S.text(65536), 256)),
    /** The working directory in the guest (the shared folder); $HOME when it does not exist there. */
    cwd: S.optional(S.rule((x) => v.absolutePath('guest folder', x))),
    /** All steps ran: record origin.createDone in vm.json (the `create` steps run once). */
    markCreateDone: S.optional(S.bool),
  }),
  share: S.object({ name: vm, ...share }),
  unshare: S.object({ name: vm, guestPath: S.rule((x) => v.absolutePath('guest folder', x)) }),
  portAdd: S.object({ name: vm, ...port }),
  portRemove: S.object({ name: vm, protocol: S.optional(S.oneOf('tcp', 'udp')), hostPort: S.int(1, 65535) }),
  /** The Display tab's size in CSS pixels; the helper fits it to the limits (shared/display.ts). */
  displayResize: S.object({ name: vm, width: S.int(1, 65535), height: S.int(1, 65535) }),
  start: S.object({
    ...withProgress,
    name: vm,
    waitSsh: S.optional(S.bool),
    /** Seconds to wait for SSH before giving up (default 900: first boots under TCG are slow). */
    timeoutSec: S.optional(S.int(1, 86400)),
    /** A suspended VM resumes from its saved RAM state unless this is set (then it cold boots). */
    discardState: S.optional(S.bool),
  }),
  /** ssh-proxy: make the VM run (boot or resume) until SSH answers. */
  wake: S.object({ ...withProgress, name: vm }),
  stop: S.object({ ...withProgress, name: vm, force: S.optional(S.bool) }),
  suspend: S.object({ ...withProgress, name: vm }),
  delete: S.object({ name: vm, force: S.optional(S.bool) }),
  snapshot: S.object({
    ...withProgress,
    name: vm,
    snapshot,
    /** Also save RAM (pause, save, freeze, resume); restore then continues from that moment. */
    ram: S.optional(S.bool),
  }),
  restore: S.object({ ...withProgress, name: vm, snapshot }),
  snapshotDelete: S.object({ name: vm, snapshot }),
  clone: S.object({
    ...withProgress,
    source: vm,
    name: vm,
    /** Clone from this snapshot's layer instead of the source's current disk. */
    snapshot: S.optional(snapshot),
    start: S.optional(S.bool),
  }),
  diskAttach: S.object({
    name: vm,
    /** nbd://HOST:PORT/EXPORT, or an absolute path to a qcow2/raw file. */
    source: S.rule(v.diskSource),
    /** As USB mass storage on the xHCI controller instead of virtio-blk. */
    usb: S.optional(S.bool),
    readOnly: S.optional(S.bool),
    /** A file is attached as raw only when this says so; default: qcow2 (checked). */
    format,
    /** nbd:// (TCP) only: the TLS-PSK key file ("identity:hexkey") of a `disk export --tcp`. */
    tlsPskFile: S.optional(S.rule((x) => v.absolutePath('TLS-PSK key file', x))),
  }),
  diskDetach: S.object({ name: vm, id: S.rule(v.diskId) }),
  diskExport: S.object({
    ...withProgress,
    name: vm,
    snapshot: S.optional(snapshot),
    /**
     * Serve on 127.0.0.1 TCP with TLS-PSK instead of the default 0600 unix socket in the
     * VM's directory (the key file is 0600 too).
     */
    tcp: S.optional(S.bool),
  }),
  usb: S.object({
    name: vm,
    /** A HostUsbDevice id ("1-2.3"), VENDOR:PRODUCT or BUS/DEV. */
    device: S.rule(v.usbDeviceSpec),
  }),
  shutdown: S.object({ stopVms: S.optional(S.bool) }),
  imageBuild: S.object({ ...withProgress, recipe: S.text(64), name: S.optional(S.rule(v.imageName)) }),
  imageImport: S.object({
    ...withProgress,
    /** A disk image file, or an nbd:// URI used in place (read through each VM's cache) unless `copy`. */
    file: S.rule(v.importSource),
    name: S.rule(v.imageName),
    copy: S.optional(S.bool),
    /** The disk's format. A file is taken as raw only when this says so; default: qcow2 (checked). */
    format,
    /** Copy a qcow2 that has a backing file into one standalone base (refused otherwise). */
    flatten: S.optional(S.bool),
    kernel: S.optional(S.rule((x) => v.absolutePath('kernel file', x))),
    initrd: S.optional(S.rule((x) => v.absolutePath('initrd file', x))),
  }),
  imageName: S.object({ name: S.rule(v.imageName) }),
  sshInclude: S.object({ userConfig: S.optional(S.rule((x) => v.absolutePath('ssh config file', x))) }),
} as const;

export type NameParams = S.Infer<typeof Params.name>;
export type CreateParams = S.Infer<typeof Params.create>;
export type StartParams = S.Infer<typeof Params.start>;
export type StopParams = S.Infer<typeof Params.stop>;
export type ImageBuildParams = S.Infer<typeof Params.imageBuild>;
export type ImageImportParams = S.Infer<typeof Params.imageImport>;
export type SnapshotParams = S.Infer<typeof Params.snapshot>;
export type CloneParams = S.Infer<typeof Params.clone>;
export type SetParams = S.Infer<typeof Params.set>;
export type DiskAttachParams = S.Infer<typeof Params.diskAttach>;
export type DiskExportParams = S.Infer<typeof Params.diskExport>;
export type UsbParams = S.Infer<typeof Params.usb>;
export type ShareParams = S.Infer<typeof Params.share>;
export type PortAddParams = S.Infer<typeof Params.portAdd>;
export type ProvisionParams = S.Infer<typeof Params.provision>;

export interface UsbEvent {
  action: 'add' | 'remove';
  device: HostUsbDevice;
  runningVms: string[];
}

export interface SshTarget {
  /** The ssh_config file with this VM's Host block. */
  configFile: string;
  host: string;
  user: string;
  port: number;
}

/** What ssh-proxy learns before it asks for the wake (vm/wake.ts wakePlan). */
export interface WakePlan {
  /** The VM runs and its SSH has worked: vm/wake answers at once. */
  ready: boolean;
  /**
   * The guest sshd's identification line as last seen: ssh-proxy sends it to ssh at once
   * while the VM boots, so ssh's ConnectTimeout (which covers only the wait for that line)
   * does not run out during the boot. null: not known yet.
   */
  ident: string | null;
}

export interface OutputParams {
  token: string;
  text: string;
}

export interface ProgressParams {
  token: string;
  message: string;
  /** 0..1 when known. */
  fraction?: number;
}

/** A request: its method, its parameter schema, and (for the compiler only) its result. */
export type Request<P, R> = (P extends void ? RequestType0<R, RpcErrorData> : RequestType<P, R, RpcErrorData>) & { readonly params: S.Schema<P>; readonly result?: R };

function request<R>() {
  return <P>(method: string, params: S.Schema<P>): Request<P, R> =>
    Object.assign(params === (S.none as S.Schema<unknown>) ? new RequestType0<R, RpcErrorData>(method) : new RequestType<P, R, RpcErrorData>(method), { params }) as Request<P, R>;
}

export const Rpc = {
  ping: request<HelperInfo>()('helper/ping', S.none),
  shutdown: request<void>()('helper/shutdown', Params.shutdown),
  doctor: request<DoctorReport>()('helper/doctor', S.none),

  vmList: request<VmSummary[]>()('vm/list', S.none),
  vmInfo: request<VmInfo>()('vm/info', Params.name),
  vmCreate: request<VmSummary>()('vm/create', Params.create),
  vmStart: request<VmSummary>()('vm/start', Params.start),
  vmStop: request<VmSummary>()('vm/stop', Params.stop),
  vmSuspend: request<VmSummary>()('vm/suspend', Params.suspend),
  vmDelete: request<void>()('vm/delete', Params.delete),
  vmSshTarget: request<SshTarget>()('vm/sshTarget', Params.name),
  /** Boots or resumes the VM if needed and waits until SSH answers (a running one answers at once). */
  vmWake: request<SshTarget>()('vm/wake', Params.wake),
  vmWakePlan: request<WakePlan>()('vm/wakePlan', Params.name),
  vmSnapshot: request<SnapshotInfo & { pauseMs: number }>()('vm/snapshot', Params.snapshot),
  vmRestore: request<VmSummary>()('vm/restore', Params.restore),
  vmSnapshotDelete: request<void>()('vm/snapshotDelete', Params.snapshotDelete),
  vmClone: request<VmSummary>()('vm/clone', Params.clone),
  vmSet: request<VmSummary>()('vm/set', Params.set),
  vmDisplay: request<DisplayInfo>()('vm/display', Params.name),
  /** Asks the guest for a new resolution and waits (up to 2 s) until it shows it or keeps its own. */
  vmDisplayResize: request<DisplayResizeResult>()('vm/displayResize', Params.displayResize),
  vmScreenshot: request<Screenshot>()('vm/screenshot', Params.name),
  vmProvision: request<ProvisionResult>()('vm/provision', Params.provision),
  layerTree: request<LayerNode[]>()('layer/tree', S.none),

  /** Adds a share to the configuration, and mounts it now when the VM runs and the transport allows. */
  vmShare: request<ShareInfo>()('vm/share', Params.share),
  vmUnshare: request<void>()('vm/unshare', Params.unshare),
  vmPorts: request<PortForward[]>()('vm/ports', Params.name),
  vmPortAdd: request<PortForward>()('vm/portAdd', Params.portAdd),
  vmPortRemove: request<void>()('vm/portRemove', Params.portRemove),
  /** The forwards with whether automatic forwarding works, and why not (`devvm ports`). */
  vmPortStatus: request<PortStatus>()('vm/portStatus', Params.name),

  diskAttach: request<AttachedDisk>()('disk/attach', Params.diskAttach),
  diskDetach: request<void>()('disk/detach', Params.diskDetach),
  /** Serves a frozen layer read-only over NBD (a snapshot's, else the current disk frozen now): a 0600 unix socket, or TLS-PSK on 127.0.0.1. */
  diskExport: request<NbdExport>()('disk/export', Params.diskExport),
  diskUnexport: request<void>()('disk/unexport', Params.name),

  usbList: request<HostUsbDevice[]>()('usb/list', S.none),
  usbAttach: request<HostUsbDevice>()('usb/attach', Params.usb),
  usbDetach: request<void>()('usb/detach', Params.usb),

  imageList: request<ImageInfo[]>()('image/list', S.none),
  imageBuild: request<ImageInfo>()('image/build', Params.imageBuild),
  imagePull: request<ImageInfo>()('image/pull', Params.imageBuild),
  imageImport: request<ImageInfo>()('image/import', Params.imageImport),
  imageDelete: request<void>()('image/delete', Params.imageName),

  sshInclude: request<{ changed: boolean; file: string; backup: string | null }>()('ssh/include', Params.sshInclude),
} as const;

export type RpcName = keyof typeof Rpc;
export type ParamsOf<K extends RpcName> = (typeof Rpc)[K] extends { params: S.Schema<infer P> } ? P : never;
export type ResultOf<K extends RpcName> = (typeof Rpc)[K] extends { result?: infer R } ? R : never;

/** What the helper must implement: one handler per request, typed by the table above. */
export type Handlers<Ctx> = { [K in RpcName]: (params: ParamsOf<K>, ctx: Ctx) => Promise<ResultOf<K>> | ResultOf<K> };

export const Notify = {
  vmChanged: new NotificationType<VmSummary>('vm/changed'),
  vmRemoved: new NotificationType<NameParams>('vm/removed'),
  imagesChanged: new NotificationType0('image/changed'),
  progress: new NotificationType<ProgressParams>('progress'),
  usb: new NotificationType<UsbEvent>('usb/event'),
  /** A VM's forwards changed (a guest process started or stopped listening, a static one added). */
  ports: new NotificationType<{ name: string; ports: PortForward[] }>('vm/ports'),
  /** Output of a long request (vm/provision's steps) as it comes, for the request's progress token. */
  output: new NotificationType<OutputParams>('output'),
} as const;

/** Numeric JSON-RPC error code used for every devvm error; the symbolic code is in data. */
export const RPC_ERROR = -32001;
