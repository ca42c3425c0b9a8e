/** Error codes shared by helper, CLI and extension. Stable: scripts match on them. */
export type ErrorCode =
  | 'invalid-argument'
  | 'not-found'
  | 'already-exists'
  | 'invalid-state'
  | 'not-supported'
  | 'busy'
  | 'missing-dependency'
  | 'provisioning-failed'
  | 'timeout'
  | 'process-failed'
  | 'io'
  | 'internal';

/** The one error type crossing module and process boundaries; `message` is one line. */
export class DevvmError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message.replace(/\s*\n\s*/g, ' ').trim());
    this.name = 'DevvmError';
  }

  /** `<what> (<hint>)`, the CLI prefixes `devvm: `. */
  oneLine(): string {
    return this.hint ? `${this.message} (${this.hint})` : this.message;
  }
}

export function asDevvmError(e: unknown): DevvmError {
  if (e instanceof DevvmError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err === 'object' && typeof err.code === 'string') {
    if (err.code === 'ENOSPC') return new DevvmError('io', `no space left on device${err.path ? ` at ${err.path}` : ''}`, 'free some disk space and try again');
    if (err.code === 'EACCES' || err.code === 'EPERM') return new DevvmError('io', `permission denied${err.path ? `: ${err.path}` : ''}`);
    if (err.code === 'ENOENT') return new DevvmError('not-found', `no such file${err.path ? `: ${err.path}` : ''}`);
  }
  const message = err instanceof Error ? err.message : String(e);
  return new DevvmError('internal', message);
}
