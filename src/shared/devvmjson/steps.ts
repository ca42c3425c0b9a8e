/**
 * The plan's provisioning as vm/provision steps: the `create` steps and the dotfiles (run
 * once), and the `start` steps (every `up`). Dotfiles are installed the way Codespaces
 * does: the first of its install scripts that exists runs, else every dotfile at the top
 * of the repository is linked into $HOME.
 */
import type { ProvisionStep } from '../types';
import type { Dotfiles, Plan } from './plan';
import { shellQuote } from './shell';

/** Codespaces' order (docs: "Personalizing Codespaces ... dotfiles"). */
export const DOTFILES_SCRIPTS = ['install.sh', 'install', 'bootstrap.sh', 'bootstrap', 'script/bootstrap', 'setup.sh', 'setup', 'script/setup'] as const;

/** Where the dotfiles land in the guest. */
export const DOTFILES_DIR = '$HOME/dotfiles';

export function dotfilesScript(d: Dotfiles): string {
  const fetch =
    d.kind === 'local'
      ? [
          '# copied from the host into $DEVVM_FILES',
          'rm -rf -- "$target"',
          'mkdir -p -- "$target"',
          'cp -a -- "$DEVVM_FILES/." "$target/"',
        ]
      : [
          'if ! command -v git >/dev/null; then',
          '  echo "dotfiles: git is not installed in the guest (install it in a create step that runs as root, before the dotfiles)" >&2',
          '  exit 127',
          'fi',
          'rm -rf -- "$target"',
          `git clone --depth 1 -- ${shellQuote(d.url)} "$target"`,
        ];
  return [
    `target="${DOTFILES_DIR}"`,
    ...fetch,
    'cd -- "$target"',
    `for f in ${DOTFILES_SCRIPTS.join(' ')}; do`,
    '  if [ -f "$f" ]; then',
    '    echo "dotfiles: running $f"',
    '    chmod +x -- "$f"',
    '    "./$f"',
    '    exit 0',
    '  fi',
    'done',
    'shopt -s nullglob',
    'for f in .[!.]* ..?*; do',
    '  case "$f" in .git|.gitignore|.gitmodules|.github) continue ;; esac',
    '  ln -sfn -- "$target/$f" "$HOME/$f"',
    '  echo "dotfiles: linked ~/$f"',
    'done',
    '',
  ].join('\n');
}

/** The steps that run once, after first setup: `create` steps in order, then the dotfiles. */
export function createSteps(p: Plan): ProvisionStep[] {
  const steps: ProvisionStep[] = p.steps.filter((s) => s.when === 'create').map((s) => ({ label: s.label, as: s.as, script: s.text }));
  if (p.dotfiles) steps.push({ label: 'dotfiles', as: 'user', script: dotfilesScript(p.dotfiles), ...(p.dotfiles.kind === 'local' ? { files: p.dotfiles.path } : {}) });
  return steps;
}

/** The steps of every `up` (and every boot through it). */
export function startSteps(p: Plan): ProvisionStep[] {
  return p.steps.filter((s) => s.when === 'start').map((s) => ({ label: s.label, as: s.as, script: s.text }));
}
