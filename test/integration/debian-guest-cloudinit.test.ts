/**
 * The provisioning checks of provisioning.ts on the same debian-12 image, provisioned
 * through cloud-init instead (DEVVM_PROVISION=cloud-init in the helper's environment, as
 * for images from elsewhere): the image keeps cloud-init installed and the kernel command
 * line's cloud-init=enabled turns it on. Two first boots in parallel and one reboot.
 */
import { after } from 'node:test';
import { Sandbox } from './harness';
import { provisioningTests, rebootTests } from './provisioning';

const sb = new Sandbox('debian-ci');
after(() => sb.cleanup());

provisioningTests(sb, 'cloud-init');
rebootTests(sb);
