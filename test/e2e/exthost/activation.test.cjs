// Runs inside VS Code's extension host (mocha, via @vscode/test-cli): the extension activates
// lazily from its view, registers its commands, and starts its own helper.
const assert = require('node:assert/strict');
const vscode = require('vscode');

suite('devvm in the extension host', () => {
  test('activates from the Dev VMs view and registers every contributed command', async () => {
    const ext = vscode.extensions.getExtension('devvm.devvm');
    assert.ok(ext, 'extension present');
    await vscode.commands.executeCommand('workbench.view.extension.devvm');
    const api = await ext.activate();
    assert.ok(api.activationMs < 1000, `activation took ${api.activationMs} ms`);
    const all = await vscode.commands.getCommands(true);
    for (const c of ext.packageJSON.contributes.commands) assert.ok(all.includes(c.command), c.command);
  });

  test('refresh reaches the helper (started on demand)', async () => {
    await vscode.commands.executeCommand('devvm.refresh');
  });
});
