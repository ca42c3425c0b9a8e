/**
 * Driving the VS Code workbench (code-server) with Playwright: command palette, views,
 * tree rows, context menus, dialogs, notifications, webviews and terminals, plus
 * screenshots numbered in step order.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Frame, type Locator, type Page } from 'playwright-core';

/** Flags from MACHINE.md: Debian's chromium as root in a container, offline. */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: process.env.DEVVM_CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

export class Workbench {
  private step = 0;
  theme = 'light';

  constructor(
    readonly page: Page,
    private readonly artifacts: string,
    private readonly log: (s: string) => void,
  ) {
    mkdirSync(artifacts, { recursive: true });
    // Playwright waits forever by default; a stuck step should fail with a message.
    page.setDefaultTimeout(30_000);
  }

  async shot(name: string): Promise<string> {
    // Park the mouse where it raises no hover or tooltip.
    await this.page.mouse.move(this.page.viewportSize()!.width - 5, 60);
    const file = path.join(this.artifacts, `${String(++this.step).padStart(2, '0')}-${name}-${this.theme}.png`);
    await this.page.screenshot({ path: file });
    this.log(`screenshot ${path.basename(file)}`);
    return file;
  }

  async open(url: string): Promise<void> {
    await this.page.goto(url);
    await this.page.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
    // The workbench is usable once the activity bar has its items.
    await this.page.locator('.activitybar .action-item').first().waitFor({ timeout: 60_000 });
  }

  /** Runs a command from the palette by its full title, e.g. "Dev VMs: Create VM…". */
  async command(title: string): Promise<void> {
    await this.page.keyboard.press('F1');
    const input = this.page.locator('.quick-input-widget input[type="text"], .quick-input-widget .quick-input-box input').first();
    await input.waitFor({ timeout: 10_000 });
    await input.fill(`>${title}`);
    // The entry whose label is exactly the title (fuzzy matching ranks others first at times).
    const row = this.page
      .locator('.quick-input-widget .monaco-list-row', { has: this.page.locator('.label-name', { hasText: new RegExp(`^${escapeRe(title)}$`) }) })
      .first();
    await row.click();
  }

  /** Answers an open quick pick with the entry labelled `label`. */
  async pick(label: string): Promise<void> {
    const input = this.page.locator('.quick-input-widget .quick-input-box input').first();
    await input.waitFor({ timeout: 10_000 });
    await input.fill(label);
    await this.page.locator('.quick-input-widget .monaco-list-row', { has: this.page.locator('.label-name', { hasText: new RegExp(`^${escapeRe(label)}$`) }) }).first().click();
  }

  /** The sidebar view pane with this title (e.g. "Virtual Machines"). */
  pane(title: string): Locator {
    return this.page.locator('.pane', { has: this.page.locator('.pane-header', { hasText: title }) });
  }

  /** A tree row whose label is exactly `label` inside a pane. */
  row(pane: Locator, label: string): Locator {
    return pane.locator('.monaco-list-row', { has: this.page.locator('.label-name', { hasText: new RegExp(`^${escapeRe(label)}$`) }) });
  }

  async expand(row: Locator): Promise<void> {
    // A refresh landing just after the click (e.g. the vm/changed of a snapshot just
    // taken) redraws the row collapsed: click again until it stays open.
    await until('the row to expand', 15_000, async () => {
      if ((await row.getAttribute('aria-expanded')) === 'true') return true;
      await row.locator('.monaco-tl-twistie').click();
      return false;
    }, 1000);
  }

  async contextMenu(row: Locator, item: string): Promise<void> {
    await this.page.keyboard.press('Escape');
    await row.click({ button: 'right' });
    // Closed menus can linger hidden in the DOM: only the visible one counts.
    const menu = this.page.locator('.monaco-menu').filter({ visible: true });
    const entry = menu.locator('.action-item:not(.disabled) .action-label', { hasText: new RegExp(`^${escapeRe(item)}$`) }).first();
    await entry.waitFor({ timeout: 10_000 });
    await entry.hover();
    await entry.click();
    await menu.first().waitFor({ state: 'hidden', timeout: 5000 });
  }

  /** Labels of the context menu's entries for a row (closes the menu again). */
  async contextMenuItems(row: Locator): Promise<string[]> {
    await row.click({ button: 'right' });
    const menu = this.page.locator('.monaco-menu').filter({ visible: true });
    await menu.first().waitFor({ timeout: 10_000 });
    const labels = await menu.locator('.action-item:not(.disabled) .action-label').allTextContents();
    await this.page.keyboard.press('Escape');
    return labels.map((l) => l.trim()).filter(Boolean);
  }

  dialog(): Locator {
    return this.page.locator('.monaco-dialog-box');
  }

  notification(text: string | RegExp): Locator {
    return this.page.locator('.notifications-toasts .notification-toast', { hasText: text });
  }

  /**
   * The content frame of the webview whose page has this <title> (VS Code nests each
   * webview in two iframes, and keeps hidden ones around).
   */
  async webview(title: string, timeoutMs = 30_000): Promise<Frame> {
    return until(`the "${title}" webview`, timeoutMs, async () => {
      for (const f of this.page.frames()) {
        if (f.isDetached()) continue;
        if ((await f.title().catch(() => '')) === title) return f;
      }
      return undefined;
    });
  }

  /** Text shown by the xterm.js console in a webview. */
  async consoleText(title: string): Promise<string> {
    const f = await this.webview(title);
    return (await f.locator('.xterm-rows').allInnerTexts()).join('\n');
  }
}

export function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export async function until<T>(what: string, timeoutMs: number, f: () => Promise<T | undefined | false | null> | T | undefined | false | null, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
