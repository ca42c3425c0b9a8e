/** One line about the guest agent, for `devvm info` and the tree's tooltip. */
import type { GuestAgentInfo } from './types';

export function agentText(a: GuestAgentInfo): string {
  if (a.state === 'absent') return 'absent (no guest agent has opened its channel)';
  if (a.state === 'not-answering') return 'not answering';
  const up = a.uptimeSec === undefined ? [] : [`up ${a.uptimeSec < 120 ? `${a.uptimeSec} s` : a.uptimeSec < 7200 ? `${Math.floor(a.uptimeSec / 60)} min` : `${Math.floor(a.uptimeSec / 3600)} h`}`];
  const parts = [a.ip ? `IP ${a.ip}` : 'no IPv4 address', a.os, a.hostname ? `host name ${a.hostname}` : undefined, ...up].filter((x): x is string => !!x);
  return parts.join(', ');
}
