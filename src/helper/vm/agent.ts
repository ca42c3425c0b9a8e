/** The guest agent as `info` shows it: its state and the guest's facts. */
import type { GuestAgentInfo } from '../../shared/types';
import type { Instance } from '../driver/driver';

/** `info` must stay quick: the agent gets this long for all its answers. */
const FACTS_TIMEOUT_MS = 3000;

export async function guestAgentInfo(inst: Instance, mac: string): Promise<GuestAgentInfo> {
  const agent = inst.agent;
  if (!agent) return { state: 'absent' };
  try {
    if (!(await agent.connected())) return { state: 'absent' };
    await agent.ping(FACTS_TIMEOUT_MS);
  } catch {
    return { state: 'not-answering' };
  }
  const f = await agent.facts(mac, FACTS_TIMEOUT_MS);
  const out: GuestAgentInfo = { state: 'answering' };
  if (f.ip !== null) out.ip = f.ip;
  if (f.os !== null) out.os = f.os;
  if (f.hostname !== null) out.hostname = f.hostname;
  if (f.uptimeSec !== null) out.uptimeSec = f.uptimeSec;
  return out;
}
