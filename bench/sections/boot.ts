/**
 * Cold boot (the second boot: first setup done) to SSH of debian-12 against debian-12-stock,
 * the same packages and guest setup with Debian's own initramfs, units and timers (none of
 * hooks.ts BOOT_TUNING), on the same QEMU and kernel command line, in the same run. The two
 * alternate, one VM at a time, so drift in the machine's load hits both alike.
 * systemd-analyze of each image's last boot goes to the notes (docs/boot.md quotes them).
 */
import { debianImage, type Sandbox } from '../../test/integration/harness';
import { type BenchSection, bootAnalysis, median, timed } from '../section';

const SAMPLES = Math.max(1, Number(process.env.DEVVM_BENCH_BOOT_SAMPLES) || 3);

/** `start --wait-ssh` plus one ssh command, from stopped. */
function coldBoot(sb: Sandbox, vm: string): number {
  return timed(() => sb.ok(['start', vm, '--wait-ssh'])) + timed(() => sb.ok(['ssh', vm, '--', 'true']));
}

export const bootSection: BenchSection = {
  name: 'boot',
  targets: { coldBootDevvmToSshMs: '', coldBootStockToSshMs: '', coldBootRatioVsStock: '≤ 0.6' },
  async run(sb, out, note) {
    debianImage(sb);
    note('building debian-12-stock (the baseline)');
    sb.ok(['image', 'build', 'debian-12-stock']);
    const images = { devvm: 'debian-12', stock: 'debian-12-stock' } as const;
    const times: Record<keyof typeof images, number[]> = { devvm: [], stock: [] };
    for (const [kind, image] of Object.entries(images)) {
      const vm = `boot-${kind}`;
      note(`${vm}: first boot (first setup), then stop`);
      sb.ok(['create', vm, '--image', image, '--user', 'bench', '--memory', '1024', '--start', '--wait-ssh']);
      sb.cli(['ssh', vm, '--', 'systemctl', 'is-system-running', '--wait']);
      sb.ok(['stop', vm]);
    }
    for (let i = 0; i < SAMPLES; i++) {
      for (const kind of Object.keys(images) as Array<keyof typeof images>) {
        const vm = `boot-${kind}`;
        const ms = coldBoot(sb, vm);
        times[kind].push(ms);
        note(`cold boot sample ${i + 1}/${SAMPLES} ${images[kind]}: ${Math.round(ms)} ms`);
        if (i === SAMPLES - 1) note(`${images[kind]}, last cold boot:\n${bootAnalysis(sb, vm)}`);
        sb.ok(['stop', vm]);
      }
    }
    for (const kind of Object.keys(images)) sb.ok(['delete', `boot-${kind}`, '--force']);
    out.coldBootDevvmToSshMs = Math.round(median(times.devvm));
    out.coldBootStockToSshMs = Math.round(median(times.stock));
    out.coldBootRatioVsStock = +(median(times.devvm) / median(times.stock)).toFixed(2);
  },
};
