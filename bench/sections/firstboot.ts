/**
 * First boot to SSH of a debian-12 VM (an image built here) through devvm's own first boot
 * (devvm-firstboot, the seed in fw_cfg) and, in the same run on the same image, through
 * cloud-init (a second sandbox whose helper runs with DEVVM_PROVISION=cloud-init: the helper
 * reads its environment when it starts). One VM at a time, so the two do not share the CPU.
 * systemd-analyze of each first boot goes to the notes (docs/firstboot.md quotes them).
 */
import { debianImage, Sandbox } from '../../test/integration/harness';
import { type BenchSection, bootAnalysis, median, timed } from '../section';

const SAMPLES = Math.max(1, Number(process.env.DEVVM_BENCH_FIRSTBOOT_SAMPLES) || 1);

/** create --start --wait-ssh, then one ssh command: what a user waits for after "Create". */
function firstBoot(sb: Sandbox, vm: string, note: (m: string) => void): number {
  const ms = timed(() => sb.ok(['create', vm, '--image', 'debian-12', '--user', 'bench', '--memory', '1024', '--start', '--wait-ssh'])) + timed(() => sb.ok(['ssh', vm, '--', 'true']));
  note(`${vm}: first boot to SSH ${Math.round(ms)} ms\n${bootAnalysis(sb, vm)}`);
  sb.ok(['delete', vm, '--force']);
  return ms;
}

export const firstboot: BenchSection = {
  name: 'firstboot',
  targets: { firstBootToSshMs: '', firstBootCloudInitToSshMs: '', firstBootRatioVsCloudInit: '≤ 0.5' },
  async run(sb, out, note) {
    debianImage(sb);
    const ci = new Sandbox('bench-ci');
    ci.env.DEVVM_PROVISION = 'cloud-init';
    try {
      debianImage(ci);
      const devvm: number[] = [];
      const cloud: number[] = [];
      for (let i = 0; i < SAMPLES; i++) {
        note(`firstboot sample ${i + 1}/${SAMPLES}: devvm-firstboot`);
        devvm.push(firstBoot(sb, `fb-devvm-${i}`, note));
        note(`firstboot sample ${i + 1}/${SAMPLES}: cloud-init (DEVVM_PROVISION=cloud-init)`);
        cloud.push(firstBoot(ci, `fb-ci-${i}`, note));
      }
      out.firstBootToSshMs = Math.round(median(devvm));
      out.firstBootCloudInitToSshMs = Math.round(median(cloud));
      out.firstBootRatioVsCloudInit = +(median(devvm) / median(cloud)).toFixed(2);
    } finally {
      ci.cleanup();
    }
  },
};
