/**
 * Shared folders: sequential read and write of a 256 MiB file through the share (guest
 * caches dropped before each read), the same read from the guest's own disk, and creating
 * plus stat-ing 5,000 small files in the share against the same on the guest's disk. The
 * read-write share uses the host's transport (virtiofs as root here); the read-only one is
 * 9p (QEMU's C virtiofsd has no read-only mode), which gives the 9p read figure beside it.
 * Host page cache is not dropped (other work shares this host): reads measure the transport.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ShareInfo } from '../../src/shared/types';
import { waitFor } from '../../test/integration/harness';
import type { BenchSection } from '../section';

const VM = 'shares';
const MIB = 256;

export const sharesSection: BenchSection = {
  name: 'shares',
  targets: {
    shareReadMiBps: '', shareWriteMiBps: '', shareDiskReadMiBps: '', shareReadRatioVsDisk: '≥ 0.5 (virtiofs)',
    shareRead9pMiBps: '', shareRead9pRatioVsDisk: '', shareSmallFilesMs: '', shareSmallFilesDiskMs: '', shareSmallFilesRatioVsDisk: '',
  },
  async run(sb, out, note) {
    const rw = mkdtempSync(path.join(os.tmpdir(), 'devvm-bench-share-'));
    const ro = mkdtempSync(path.join(os.tmpdir(), 'devvm-bench-share9p-'));
    try {
      // The 9p read figure's file, made on the host.
      execFileSync('dd', ['if=/dev/urandom', `of=${path.join(ro, 'big')}`, 'bs=1M', `count=${MIB}`, 'status=none']);
      sb.ok(['image', 'build', 'debian-12']);
      note('shares: booting a VM with a read-write and a read-only share');
      sb.ok(['create', VM, '--image', 'debian-12', '--user', 'bench', '--memory', '1024', '--share', `${rw}:/mnt/rw`, '--share', `${ro}:/mnt/ro:ro`]);
      const r = await sb.cliAsync(['start', VM, '--wait-ssh']);
      if (r.code !== 0) throw new Error(`start ${VM}: ${r.stderr}`);
      const shares = await waitFor('the shares to mount', 300_000, () => {
        const s = sb.json<{ shares: ShareInfo[] }>(['info', VM]).shares;
        return s.every((x) => x.mounted) ? s : undefined;
      });
      note(`shares: ${shares.map((s) => `${s.guestPath} over ${s.transport}`).join(', ')}`);
      /** Nanoseconds a guest command took, timed in the guest (no SSH round trip in it). */
      const guestNs = (cmd: string): number => {
        // One string: ssh joins its arguments for the remote shell.
        const res = sb.ssh(VM, [`s=$(date +%s%N); ${cmd}; e=$(date +%s%N); echo $((e-s))`]);
        if (res.code !== 0) throw new Error(`${cmd}: ${res.stderr}`);
        return Number(res.stdout.trim().split('\n').pop());
      };
      const drop = 'sync; sudo -n sh -c "echo 3 > /proc/sys/vm/drop_caches"';
      const mibps = (ns: number) => +(MIB / (ns / 1e9)).toFixed(1);
      const write = (file: string) => mibps(guestNs(`dd if=/dev/zero of=${file} bs=1M count=${MIB} conv=fsync status=none`));
      const read = (file: string) => {
        sb.ssh(VM, [drop]);
        return mibps(guestNs(`cat ${file} > /dev/null`));
      };
      out.shareWriteMiBps = write('/mnt/rw/big');
      out.shareReadMiBps = read('/mnt/rw/big');
      write('/home/bench/big');
      out.shareDiskReadMiBps = read('/home/bench/big');
      out.shareReadRatioVsDisk = +(out.shareReadMiBps / out.shareDiskReadMiBps).toFixed(2);
      out.shareRead9pMiBps = read('/mnt/ro/big');
      out.shareRead9pRatioVsDisk = +(out.shareRead9pMiBps / out.shareDiskReadMiBps).toFixed(2);
      // 5,000 empty files (a shell builtin per file: no fork), then one stat of them all.
      const small = (dir: string) => Math.round(guestNs(`mkdir -p ${dir} && cd ${dir} && i=0; while [ $i -lt 5000 ]; do : > f$i; i=$((i+1)); done; stat -- * > /dev/null`) / 1e6);
      out.shareSmallFilesMs = small('/mnt/rw/small');
      out.shareSmallFilesDiskMs = small('/home/bench/small');
      out.shareSmallFilesRatioVsDisk = +(out.shareSmallFilesMs / out.shareSmallFilesDiskMs).toFixed(2);
      sb.ok(['stop', VM, '--force']);
      sb.ok(['delete', VM]);
    } finally {
      rmSync(rw, { recursive: true, force: true });
      rmSync(ro, { recursive: true, force: true });
    }
  },
};
