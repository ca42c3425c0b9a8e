/**
 * The CLI's one command table. Dispatch (`find`) and the usage text (`usage`) are both
 * made from it, so every verb that runs is listed and every listed verb runs.
 */
import type { Command } from '../command';
import { UsageError } from '../args';
import { diskCommands } from './disk';
import { displayCommands } from './display';
import { doctorCommands } from './doctor';
import { helperCommands } from './helper';
import { imageCommands } from './image';
import { portCommands } from './ports';
import { setCommands } from './set';
import { shareCommands } from './share';
import { sshCommands } from './ssh';
import { snapshotCommands } from './snapshot';
import { upCommands } from './up';
import { usbCommands } from './usb';
import { vmCommands } from './vm';

export const COMMANDS: readonly Command[] = [
  ...imageCommands,
  ...vmCommands,
  ...upCommands,
  ...sshCommands.filter((c) => c.name === 'ssh'),
  ...setCommands,
  ...shareCommands,
  ...portCommands,
  ...displayCommands,
  ...snapshotCommands,
  ...diskCommands,
  ...usbCommands,
  ...sshCommands.filter((c) => c.name !== 'ssh'),
  ...doctorCommands,
  ...helperCommands,
];

/** Families: the first word of a two-word verb ("image", "disk", ...). */
const FAMILIES = new Set(COMMANDS.filter((c) => c.name.includes(' ')).map((c) => c.name.split(' ')[0]!));

/** The verb `argv` names and the arguments that are its own; usage error when there is none. */
export function find(argv: readonly string[]): { command: Command; argv: string[] } {
  const [first, ...rest] = argv;
  if (first === undefined) throw new UsageError('missing command');
  if (FAMILIES.has(first)) {
    // The family's verb is its first word that is not an option (`helper --json status` works).
    const at = rest.findIndex((a) => !a.startsWith('-'));
    const sub = at >= 0 ? rest[at] : undefined;
    const command = sub === undefined ? undefined : COMMANDS.find((c) => c.name === `${first} ${sub}`);
    if (!command) throw new UsageError(sub ? `unknown ${first} command "${sub}"` : `missing ${first} command`);
    return { command, argv: [...rest.slice(0, at), ...rest.slice(at + 1)] };
  }
  const command = COMMANDS.find((c) => c.name === first);
  if (!command) throw new UsageError(`unknown command "${first}"`);
  return { command, argv: rest };
}

const COLUMN = 46;

/** One command's usage: name and arguments, then what it does (on the next line when they are long). */
export function commandUsage(c: Command): string {
  const pad = ' '.repeat(2 + c.name.length + 1);
  const args = c.usage.split('\n');
  const lines = [`  ${c.name}${args[0] ? ` ${args[0]}` : ''}`, ...args.slice(1).map((l) => `${pad}${l}`)];
  const summary = c.summary.split('\n');
  const last = lines[lines.length - 1]!;
  if (last.length < COLUMN - 1) lines[lines.length - 1] = `${last.padEnd(COLUMN)}${summary[0]}`;
  else lines.push(`${' '.repeat(COLUMN)}${summary[0]}`);
  lines.push(...summary.slice(1).map((l) => `${' '.repeat(COLUMN)}${l}`));
  return lines.join('\n');
}

export function usage(): string {
  return [
    'usage: devvm <command> [options]',
    '',
    ...COMMANDS.map(commandUsage),
    '',
    'Every command but ssh takes --json (errors then are {"error": {"code", "message"}} on stdout).',
    'Errors: one line "devvm: <what> (<hint>)" on stderr, exit 1; usage errors exit 2.',
    '"devvm <command> --help" shows one command.',
  ].join('\n');
}
