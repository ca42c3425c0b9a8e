/**
 * The bash program one provisioning step sends to the guest on ssh's stdin. ssh's command
 * line is a constant ("bash -s", or "sudo -n -H bash -s"); the script, the files and the
 * environment are all inside the program: the script and the files as base64 (so no text
 * can end a heredoc early), each environment value in single quotes ('\'' for a quote),
 * which bash takes literally whatever it holds. The script runs with `bash -eE` and an
 * ERR trap that names the failing line and command.
 */
import { shellQuote } from '../../shared/devvmjson/shell';
import { DevvmError } from '../../shared/errors';

export { shellQuote };

/** Printed on stderr by the ERR trap; the helper reads the last one to say where a step failed. */
export const STEP_ERROR = 'devvm-step-error:';
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const END = 'DEVVM_B64_END';

function base64Lines(data: Buffer): string {
  return (data.toString('base64').match(/.{1,76}/g) ?? []).join('\n');
}

export interface StepProgram {
  script: string;
  env?: Record<string, string>;
  /** The working directory; $HOME when it does not exist in the guest. */
  cwd?: string;
  /** A tar archive unpacked into $DEVVM_FILES before the script runs. */
  files?: Buffer;
}

// Sourced, so that $LINENO is the line in the user's script.
const WRAPPER = [
  `trap '__devvm_rc=$?; printf "${STEP_ERROR} line %s: %s (exit %s)\\n" "$LINENO" "$BASH_COMMAND" "$__devvm_rc" >&2' ERR`,
  '. "$DEVVM_SCRIPT"',
].join('\n');

export function renderStep(p: StepProgram): string {
  const lines = [
    '__devvm_dir=$(mktemp -d /tmp/devvm-step.XXXXXXXX) || exit 70',
    `trap 'rm -rf -- "$__devvm_dir"' EXIT`,
    `base64 -d > "$__devvm_dir/script" <<'${END}' || exit 70`,
    base64Lines(Buffer.from(p.script, 'utf8')),
    END,
    `base64 -d > "$__devvm_dir/wrapper" <<'${END}' || exit 70`,
    base64Lines(Buffer.from(WRAPPER, 'utf8')),
    END,
  ];
  if (p.files) {
    lines.push(
      'mkdir -m 0700 "$__devvm_dir/files" || exit 70',
      `base64 -d <<'${END}' | tar -x -C "$__devvm_dir/files" || exit 70`,
      base64Lines(p.files),
      END,
      'export DEVVM_FILES="$__devvm_dir/files"',
    );
  }
  for (const [k, value] of Object.entries(p.env ?? {})) {
    if (!ENV_NAME.test(k)) throw new DevvmError('invalid-argument', `invalid environment variable name ${JSON.stringify(k)}`);
    lines.push(`export ${k}=${shellQuote(value)}`);
  }
  lines.push(
    'export DEVVM_SCRIPT="$__devvm_dir/script"',
    p.cwd ? `cd -- ${shellQuote(p.cwd)} 2>/dev/null || cd` : 'cd',
    // stdin is this program: the script must not read the rest of it.
    'bash --noprofile --norc -eE "$__devvm_dir/wrapper" </dev/null',
    'exit $?',
    '',
  );
  return lines.join('\n');
}

/** "at line 3: make install" from a failed step's stderr, or "" when the trap did not run. */
export function failedLine(stderr: string): string {
  const found = stderr.split('\n').filter((l) => l.startsWith(STEP_ERROR)).pop();
  const m = found && /^devvm-step-error: line (\d+): (.*) \(exit \d+\)$/.exec(found);
  return m ? `at line ${m[1]}: ${m[2]!.slice(0, 200)}` : '';
}
