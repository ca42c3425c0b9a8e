/**
 * `devvm`: a thin client of the helper's RPC (starting the helper when needed). The verbs
 * are in commands/ (one table), dispatch and the one error handler in run.ts.
 */
import { devvmHome } from '../shared/paths';
import { run } from './run';
import { RpcSession } from './session';

void run(process.argv.slice(2), new RpcSession(devvmHome()), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
}).then((code) => {
  process.exitCode = code;
});
