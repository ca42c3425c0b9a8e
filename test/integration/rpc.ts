/**
 * A tiny RPC client for integration tests that need parameters the CLI has no flag for
 * (yet): it connects to the sandbox's helper (starting it, as the CLI does) and sends one
 * request. Errors come back as the helper's DevvmError.
 */
import path from 'node:path';
import type { RequestType } from 'vscode-jsonrpc/node';
import { connect, fromRpcError } from '../../src/shared/client';
import type { Sandbox } from './harness';
import { ROOT } from './harness';

export async function rpc<P, R, E>(sb: Sandbox, type: RequestType<P, R, E>, params: P): Promise<R> {
  const conn = await connect({ home: sb.home, helperScript: path.join(ROOT, 'dist', 'helper.js'), env: sb.env });
  try {
    return await conn.sendRequest(type, params);
  } catch (e) {
    throw fromRpcError(e);
  } finally {
    conn.dispose();
  }
}
