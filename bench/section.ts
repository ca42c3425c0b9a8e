/**
 * A part of `npm run bench` that a feature adds: its figures and their targets. Sections
 * run in the order of SECTIONS (bench.ts) after the core figures, each on the same
 * sandbox; `npm run bench -- --only NAME[,NAME]` runs just those (`core` is the built-in part).
 */
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
