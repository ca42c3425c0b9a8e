/**
 * devvm set --cpus/--memory/--disk on a stopped VM (no boot): the whole CLI call, with
 * and without growing the disk (qemu-img resize of the overlay). The guest's side (the
 * root filesystem grown at the next boot) is measured by test/integration/resize-guest.
 */
import { debianImage } from '../../test/integration/harness';
import { type BenchSection, median } from '../section';

export const resizeSection: BenchSection = {
  name: 'resize',
  targets: { setSizeMs: '< 1000', setDiskMs: '< 2000' },
  async run(sb, out, note) {
    debianImage(sb);
    sb.ok(['create', 'bench-size', '--image', 'debian-12', '--user', 'dev', '--cpus', '1', '--memory', '1024', '--disk', '8']);
    try {
      const timed = (args: string[]) => {
        const t0 = performance.now();
        sb.ok(['set', 'bench-size', ...args]);
        return performance.now() - t0;
      };
      note('set --cpus/--memory, set --disk +N (3 each)');
      const size: number[] = [];
      const disk: number[] = [];
      for (let i = 0; i < 3; i++) {
        size.push(timed(['--cpus', String(1 + (i % 2)), '--memory', String(1024 + 256 * i)]));
        disk.push(timed(['--disk', '+8']));
      }
      out.setSizeMs = Math.round(median(size));
      out.setDiskMs = Math.round(median(disk));
    } finally {
      sb.ok(['delete', 'bench-size']);
    }
  },
};
