/** How the guest agent's facts read in `devvm info` and in the tree's tooltip. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { agentText } from '../../src/shared/agent';
import { groupItem } from '../../src/extension/model';
import type { VmInfo } from '../../src/shared/types';

test('agent line: facts when it answers, else "not answering" or "absent"', () => {
  assert.equal(agentText({ state: 'answering', ip: '10.0.2.15', os: 'Debian GNU/Linux 12 (bookworm)', hostname: 'dev', uptimeSec: 300 }), 'IP 10.0.2.15, Debian GNU/Linux 12 (bookworm), host name dev, up 5 min');
  assert.equal(agentText({ state: 'answering' }), 'no IPv4 address');
  assert.equal(agentText({ state: 'answering', ip: '10.0.2.15', uptimeSec: 30 }), 'IP 10.0.2.15, up 30 s');
  assert.equal(agentText({ state: 'not-answering' }), 'not answering');
  assert.match(agentText({ state: 'absent' }), /^absent/);
});

test("the Ports group's tooltip shows the guest's facts while the VM runs, escaped as Markdown", () => {
  const info = { agent: { state: 'answering', ip: '10.0.2.15', os: 'Debian GNU/Linux 12 (bookworm)' } } as unknown as VmInfo;
  const tip = groupItem({ name: 'dev', state: 'running' }, 'ports', info).tooltip;
  assert.match(tip, /Guest agent: IP 10\\\.0\\\.2\\\.15, Debian GNU\/Linux 12 \\\(bookworm\\\)/);
  assert.equal(groupItem({ name: 'dev', state: 'stopped' }, 'ports', {} as VmInfo).tooltip, 'Ports');
});
