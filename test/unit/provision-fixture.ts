/** The first-user spec both provisioning paths' unit tests render (cloud-init's seed and devvm's). */
import type { ProvisionSpec } from '../../src/helper/provision';

export const CLIENT_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq0kdUxVqrV2C9ONKmuyfwf8fSBK1Fi5NiXhz8QjX6l alice@laptop';
export const HASH = '$6$saltsalt$' + 'a'.repeat(86);

export function provisionSpec(hostKey: ProvisionSpec['hostKey'], over: Partial<ProvisionSpec> = {}): ProvisionSpec {
  return {
    hostname: 'dev',
    instanceId: 'devvm-0b7f3c1e-5d7a-4a53-9a55-3f1f2b1c9e10',
    user: 'alice',
    fullName: 'Alice Example',
    passwordHash: HASH,
    autologin: false,
    ssh: true,
    authorizedKeys: [CLIENT_KEY],
    hostKey,
    ...over,
  };
}
