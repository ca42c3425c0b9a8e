/**
 * A part of `npm run bench` that a feature adds: its figures and their targets. Sections
 * run in the order of SECTIONS (bench.ts) after the core figures, each on the same
 * sandbox; `npm run bench -- --only NAME[,NAME]` runs just those (`core` is the built-in part).
 */
import { performance } from 'node:perf_hooks';
import type { Sandbox } from '../test/integration/harness';

export interface BenchSection {
  name: string;
  /** Figure name -> target as printed in the README ('' for a figure without one). */
  targets: Record<string, string>;
  run(sb: Sandbox, out: Record<string, number>, note: (message: string) => void): Promise<void>;
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

/** Wall time of a synchronous step, ms. */
export function timed(f: () => void): number {
  const t = performance.now();
  f();
  return performance.now() - t;
}

/** systemd-analyze of the guest's boot once it has settled (for the notes; docs quote them). */
export function bootAnalysis(sb: Sandbox, vm: string): string {
  // The rest of the boot (cloud-final runs after multi-user.target) before systemd-analyze can answer.
  sb.cli(['ssh', vm, '--', 'systemctl', 'is-system-running', '--wait']);
  return sb.cli(['ssh', vm, '--', 'sh', '-c', 'systemd-analyze; systemd-analyze blame | head -n 10; systemd-analyze critical-chain ssh.service | tail -n +2']).stdout.trim();
}
