/**
 * Port forwarding: from a guest process starting to listen until the host's 127.0.0.1
 * port answers (median of 5). One VM of its own, stopped after.
 */
import { bootDebian } from '../../test/integration/harness';
import { startGuestServer, stopGuestServer, untilAnswers } from '../../test/integration/portprobe';
import { median, type BenchSection } from '../section';

export const portsSection: BenchSection = {
  name: 'ports',
  targets: { portForwardLatencyMs: '< 2000' },
  async run(sb, out, note) {
    const vm = 'benchports';
    await bootDebian(sb, vm);
    try {
      // The agent comes up after SSH: wait until automatic forwarding is on.
      for (const deadline = Date.now() + 180_000; !(sb.json<{ autoPorts?: { on: boolean } }>(['info', vm]).autoPorts?.on); await new Promise((r) => setTimeout(r, 1000))) {
        if (Date.now() > deadline) throw new Error('automatic port forwarding never came on');
      }
      const ms: number[] = [];
      for (let i = 0; i < 5; i++) {
        const port = 18200 + i;
        const s = await startGuestServer(sb, vm, port);
        ms.push(await untilAnswers(port, s.listeningAt, 20_000));
        stopGuestServer(sb, vm, s, port);
      }
      note(`port forward latencies: ${ms.join(', ')} ms`);
      out.portForwardLatencyMs = Math.round(median(ms));
    } finally {
      sb.ok(['stop', vm, '--force']);
    }
  },
};
