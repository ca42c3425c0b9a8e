/**
 * Runs one CLI invocation against a session: dispatch through the command table, and
 * the one error handler. Errors print one line `devvm: <what> (<hint>)` and exit 1;
 * usage errors exit 2; with --json, errors are `{"error": {"code", "message"}}` on stdout.
 */
import { fromRpcError } from '../shared/client';
import { DevvmError } from '../shared/errors';
import { parse, UsageError } from './args';
import type { Context } from './command';
import { COMMANDS, commandUsage, find, usage } from './commands';

declare const DEVVM_VERSION: string;

/** A Context that also knows whether output is JSON, and can be closed. */
export interface Session extends Context {
  json: boolean;
  close(): void;
}

export interface Output {
  stdout(text: string): void;
  stderr(text: string): void;
}

const HELP = new Set(['help', '--help', '-h']);

async function dispatch(argv: readonly string[], session: Session, out: Output): Promise<number> {
  const [first] = argv;
  if (first === undefined || HELP.has(first)) {
    out.stdout(`${usage()}\n`);
    return 0;
  }
  if (first === '--version') {
    out.stdout(`${typeof DEVVM_VERSION === 'string' ? DEVVM_VERSION : 'dev'}\n`);
    return 0;
  }
  // `--` ends a pass-through verb's own arguments (ssh NAME -- CMD); any other verb gets
  // it as it always did, and parseArgs reads what follows as positionals.
  const at = argv.indexOf('--');
  const passes = at >= 0 && find(argv.slice(0, at)).command.passThrough === true;
  const dash = passes ? at : -1;
  const own = dash >= 0 ? argv.slice(0, dash) : [...argv];
  // `devvm image --help`: the family's verbs; `devvm create --help`: that verb.
  if (own.length === 2 && HELP.has(own[1]!) && COMMANDS.some((c) => c.name.startsWith(`${first} `))) {
    out.stdout(`${COMMANDS.filter((c) => c.name.startsWith(`${first} `)).map(commandUsage).join('\n')}\n`);
    return 0;
  }
  const { command, argv: args } = find(own);
  const helpAt = args.indexOf('--');
  if ((helpAt >= 0 ? args.slice(0, helpAt) : args).some((a) => HELP.has(a) && a !== 'help')) {
    out.stdout(`${commandUsage(command)}\n`);
    return 0;
  }
  const { values, positionals } = parse(args, command.options ?? {}, command.positionals);
  session.json = Boolean(values.json);
  const code = await command.run(session, { values, positionals, rest: dash >= 0 ? argv.slice(dash + 1) : [] });
  return code ?? 0;
}

export async function run(argv: readonly string[], session: Session, out: Output): Promise<number> {
  let code: number;
  try {
    code = await dispatch(argv, session, out);
  } catch (e) {
    const json = session.json || argv.includes('--json');
    if (e instanceof UsageError) {
      if (json) out.stdout(`${JSON.stringify({ error: { code: 'usage', message: e.message } })}\n`);
      else out.stderr(`devvm: ${e.message} (see "devvm --help")\n`);
      code = 2;
    } else {
      const err = e instanceof DevvmError ? e : fromRpcError(e);
      if (json) out.stdout(`${JSON.stringify({ error: { code: err.code, message: err.oneLine() } })}\n`);
      else out.stderr(`devvm: ${err.oneLine()}\n`);
      code = 1;
    }
  }
  session.close();
  return code;
}
