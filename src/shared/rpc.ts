/**
 * The helper's RPC protocol, declared once. Helper, CLI and extension import these
 * types, so a request's parameters and result are checked end to end by the compiler.
 * Transport: vscode-jsonrpc over the helper's unix socket (mode 0600).
 */
import { NotificationType, NotificationType0, RequestType, RequestType0 } from 'vscode-jsonrpc';
import type { AttachedDisk, DoctorReport, HelperInfo, HostUsbDevice, ImageInfo, LayerNode, NbdExport, SnapshotInfo, VmInfo, VmSummary } from './types';

/** Error data attached to every ResponseError the helper sends. */
export interface RpcErrorData {
  code: import('./errors').ErrorCode;
  hint?: string;
}

/** Long requests may carry a token; the helper then sends `progress` notifications with it. */
export interface WithProgress {
  progressToken?: string;
}

export interface NameParams {
  name: string;
}

export interface CreateParams extends WithProgress {
  name: string;
  image: string;
  user: string;
  fullName?: string;
  /** Plain text, sent over the 0600 socket only; the helper keeps just its SHA-512 crypt hash. */
  password?: string;
  sshKeys?: string[];
  autologin?: boolean;
  ssh?: boolean;
  cpus?: number;
  memoryMiB?: number;
  diskGiB?: number;
  start?: boolean;
  waitSsh?: boolean;
}

export interface StartParams extends NameParams, WithProgress {
  waitSsh?: boolean;
  /** Seconds to wait for SSH before giving up (default 900: first boots under TCG are slow). */
  timeoutSec?: number;
  /** A suspended VM resumes from its saved RAM state unless this is set (then it cold boots). */
  discardState?: boolean;
}

export interface StopParams extends NameParams, WithProgress {
  force?: boolean;
}

export interface ImageBuildParams extends WithProgress {
  recipe: string;
  name?: string;
}

export interface ImageImportParams extends WithProgress {
  /** A disk image file, or an nbd:// URI used in place (read through each VM's cache) unless `copy`. */
  file: string;
  name: string;
  copy?: boolean;
  /** The disk's format. A file is taken as raw only when this says so; default: qcow2 (checked). */
  format?: 'qcow2' | 'raw';
  /** Copy a qcow2 that has a backing file into one standalone base (refused otherwise). */
  flatten?: boolean;
  kernel?: string;
  initrd?: string;
}

export interface SnapshotParams extends NameParams, WithProgress {
  snapshot: string;
  /** Also save RAM (pause, save, freeze, resume); restore then continues from that moment. */
  ram?: boolean;
}

export interface CloneParams extends WithProgress {
  source: string;
  name: string;
  /** Clone from this snapshot's layer instead of the source's current disk. */
  snapshot?: string;
  start?: boolean;
}

export interface DiskAttachParams extends NameParams {
  /** nbd://HOST:PORT/EXPORT, or an absolute path to a qcow2/raw file. */
  source: string;
  /** As USB mass storage on the xHCI controller instead of virtio-blk. */
  usb?: boolean;
  readOnly?: boolean;
  /** A file is attached as raw only when this says so; default: qcow2 (checked). */
  format?: 'qcow2' | 'raw';
}

export interface DiskExportParams extends NameParams, WithProgress {
  snapshot?: string;
  /**
   * Serve on 127.0.0.1 TCP with TLS-PSK instead of the default 0600 unix socket in the
   * VM's directory (the key file is 0600 too).
   */
  tcp?: boolean;
}

export interface UsbParams extends NameParams {
  /** A HostUsbDevice id ("1-2.3") or VENDOR:PRODUCT. */
  device: string;
}

/** A host USB device appeared (or went) while VMs run: clients may offer to attach it. */
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

export interface ProgressParams {
  token: string;
  message: string;
  /** 0..1 when known. */
  fraction?: number;
}

export const Rpc = {
  ping: new RequestType0<HelperInfo, RpcErrorData>('helper/ping'),
  shutdown: new RequestType<{ stopVms?: boolean }, void, RpcErrorData>('helper/shutdown'),
  doctor: new RequestType0<DoctorReport, RpcErrorData>('helper/doctor'),

  vmList: new RequestType0<VmSummary[], RpcErrorData>('vm/list'),
  vmInfo: new RequestType<NameParams, VmInfo, RpcErrorData>('vm/info'),
  vmCreate: new RequestType<CreateParams, VmSummary, RpcErrorData>('vm/create'),
  vmStart: new RequestType<StartParams, VmSummary, RpcErrorData>('vm/start'),
  vmStop: new RequestType<StopParams, VmSummary, RpcErrorData>('vm/stop'),
  vmSuspend: new RequestType<NameParams & WithProgress, VmSummary, RpcErrorData>('vm/suspend'),
  vmDelete: new RequestType<NameParams & { force?: boolean }, void, RpcErrorData>('vm/delete'),
  vmSshTarget: new RequestType<NameParams, SshTarget, RpcErrorData>('vm/sshTarget'),
  vmSnapshot: new RequestType<SnapshotParams, SnapshotInfo, RpcErrorData>('vm/snapshot'),
  vmRestore: new RequestType<NameParams & WithProgress & { snapshot: string }, VmSummary, RpcErrorData>('vm/restore'),
  vmSnapshotDelete: new RequestType<NameParams & { snapshot: string }, void, RpcErrorData>('vm/snapshotDelete'),
  vmClone: new RequestType<CloneParams, VmSummary, RpcErrorData>('vm/clone'),
  layerTree: new RequestType0<LayerNode[], RpcErrorData>('layer/tree'),

  diskAttach: new RequestType<DiskAttachParams, AttachedDisk, RpcErrorData>('disk/attach'),
  diskDetach: new RequestType<NameParams & { id: string }, void, RpcErrorData>('disk/detach'),
  /** Serves a frozen layer read-only over NBD (a snapshot's, else the current disk frozen now): a 0600 unix socket, or TLS-PSK on 127.0.0.1. */
  diskExport: new RequestType<DiskExportParams, NbdExport, RpcErrorData>('disk/export'),
  diskUnexport: new RequestType<NameParams, void, RpcErrorData>('disk/unexport'),

  usbList: new RequestType0<HostUsbDevice[], RpcErrorData>('usb/list'),
  usbAttach: new RequestType<UsbParams, HostUsbDevice, RpcErrorData>('usb/attach'),
  usbDetach: new RequestType<UsbParams, void, RpcErrorData>('usb/detach'),

  imageList: new RequestType0<ImageInfo[], RpcErrorData>('image/list'),
  imageBuild: new RequestType<ImageBuildParams, ImageInfo, RpcErrorData>('image/build'),
  imagePull: new RequestType<ImageBuildParams, ImageInfo, RpcErrorData>('image/pull'),
  imageImport: new RequestType<ImageImportParams, ImageInfo, RpcErrorData>('image/import'),
  imageDelete: new RequestType<NameParams, void, RpcErrorData>('image/delete'),

  sshInclude: new RequestType<{ userConfig?: string }, { changed: boolean; file: string; backup: string | null }, RpcErrorData>('ssh/include'),
} as const;

export const Notify = {
  vmChanged: new NotificationType<VmSummary>('vm/changed'),
  vmRemoved: new NotificationType<NameParams>('vm/removed'),
  imagesChanged: new NotificationType0('image/changed'),
  progress: new NotificationType<ProgressParams>('progress'),
  usb: new NotificationType<UsbEvent>('usb/event'),
} as const;

/** Numeric JSON-RPC error code used for every devvm error; the symbolic code is in data. */
export const RPC_ERROR = -32001;
