/**
 * Remote-SSH details: the folder URI the extension opens, and which Remote-SSH extension
 * fits this build of VS Code. No `vscode` import.
 */

export const REMOTE_SSH_MICROSOFT = 'ms-vscode-remote.remote-ssh';
export const REMOTE_SSH_OPEN_VSX = 'jeanp413.open-remote-ssh';
export const REMOTE_SSH_IDS = [REMOTE_SSH_MICROSOFT, REMOTE_SSH_OPEN_VSX] as const;

/** The Host alias devvm writes into its ssh_config for a VM. */
export const sshAlias = (vm: string) => `devvm-${vm}`;

/**
 * `vscode-remote://ssh-remote+devvm-<vm>/home/<user>`. The alias is plain (VM names are
 * [a-z0-9-]), which Remote-SSH takes as the ssh_config Host to connect to.
 */
export function remoteFolderUri(vm: string, user: string): string {
  return remotePathUri(vm, `/home/${user}`);
}

/** `vscode-remote://ssh-remote+devvm-<vm><guestPath>`: a folder in the guest (devvm.json's folder, shared at its path). */
export function remotePathUri(vm: string, guestPath: string): string {
  return `vscode-remote://${remoteAuthority(vm)}${guestPath}`;
}

/** The URI authority Remote-SSH resolves to the ssh_config Host of a VM. */
export const remoteAuthority = (vm: string) => `ssh-remote+${sshAlias(vm)}`;

/**
 * Microsoft's Remote-SSH is only on Microsoft's marketplace and licensed for Microsoft's
 * builds; VSCodium, code-server and other Open VSX builds get open-remote-ssh.
 */
export function preferredRemoteSsh(appName: string, uriScheme: string): string {
  const microsoft = /^Visual Studio Code\b/.test(appName) || /^vscode(-insiders|-exploration)?$/.test(uriScheme);
  return microsoft ? REMOTE_SSH_MICROSOFT : REMOTE_SSH_OPEN_VSX;
}

/** The first Remote-SSH extension installed, if any (the ids that can open ssh-remote+ URIs). */
export function installedRemoteSsh(isInstalled: (id: string) => boolean): string | undefined {
  return REMOTE_SSH_IDS.find((id) => isInstalled(id));
}

/** The VM a window is connected to, from its remote authority (`ssh-remote+devvm-<vm>`). */
export function vmFromRemoteAuthority(authority: string | undefined): string | undefined {
  const m = /^ssh-remote\+devvm-([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)$/.exec(authority ?? '');
  return m?.[1];
}
