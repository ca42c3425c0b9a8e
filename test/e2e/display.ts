/**
 * The e2e's Display tab steps (workbench.test.ts runs them on its running VM, made with
 * the Create form's Display checkbox): the tab shows the guest's console (a canvas with
 * lit pixels), and when the editor area changes size (the sidebar toggled) the guest's
 * resolution, read through the CLI, becomes guestSizeFor(the tab's new CSS size).
 */
import assert from 'node:assert/strict';
import type { Frame, Locator } from 'playwright-core';
import { guestSizeFor, sameSize, sizeText, type Size } from '../../src/shared/display';
import { until, type Workbench } from './ui';

export interface DisplayStepDeps {
  w: Workbench;
  vm: string;
  vmRow: Locator;
  cli: (args: string[]) => string;
  metrics: Record<string, number | string>;
  log: (s: string) => void;
  failOnError: () => Promise<void>;
}

/** The few DOM shapes the page functions below use (this project's typecheck has no DOM lib; types are erased before they run). */
interface Doc {
  getElementById(id: string): { getBoundingClientRect(): { width: number; height: number } } | null;
  querySelector(sel: string): { width: number; height: number; getContext(t: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } | null } | null;
}

export const displayTitle = (vm: string) => `${vm} (display)`;

/** The guest's framebuffer now, from `devvm display NAME --json`. */
function guestSize(d: DisplayStepDeps): Size | null {
  return (JSON.parse(d.cli(['display', d.vm, '--json'])) as { size: Size | null }).size;
}

/** The screen container's size in CSS pixels, as the page measures it for the resize. */
async function viewSize(f: Frame): Promise<Size> {
  return f.evaluate(() => {
    const r = (globalThis as unknown as { document: Doc }).document.getElementById('screen')!.getBoundingClientRect();
    return { width: Math.floor(r.width), height: Math.floor(r.height) };
  });
}

/** Lit pixels of noVNC's canvas (a sample), so a blank or black screen fails. */
async function litPixels(f: Frame): Promise<{ lit: number; width: number; height: number } | false> {
  return f.evaluate(() => {
    const c = (globalThis as unknown as { document: Doc }).document.querySelector('#screen canvas');
    if (!c || !c.width || !c.height) return false;
    const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let lit = 0;
    for (let i = 0; i < px.length; i += 4 * 13) if (px[i]! + px[i + 1]! + px[i + 2]! > 150) lit++;
    return lit > 20 ? { lit, width: c.width, height: c.height } : false;
  });
}

/** Waits until the guest shows the size the tab's current view asks for; returns it. */
async function followsView(d: DisplayStepDeps, f: Frame, what: string, not?: Size): Promise<Size> {
  let last = '';
  return until(what, 15_000, async () => {
    await d.failOnError();
    const want = guestSizeFor(await viewSize(f));
    const have = guestSize(d);
    last = `want ${sizeText(want)}, guest ${have ? sizeText(have) : 'none'}`;
    return have && sameSize(have, want) && !sameSize(have, not) ? have : undefined;
  }, 100).catch((e: Error) => {
    throw new Error(`${e.message} (${last})`);
  });
}

export async function displaySteps(d: DisplayStepDeps): Promise<void> {
  const { w } = d;
  const page = w.page;
  let s = Date.now();
  await w.contextMenu(d.vmRow, 'Open Display');
  await page.locator('.tab', { hasText: displayTitle(d.vm) }).waitFor({ timeout: 30_000 });
  assert.equal(await w.dialog().isVisible(), false, 'no workspace trust prompt');
  const f = await w.webview(displayTitle(d.vm));
  const drawn = await until('the console drawn in the Display tab', 2 * 60_000, async () => {
    await d.failOnError();
    return litPixels(f);
  }, 500);
  d.metrics.displayOpenToDrawnMs = Date.now() - s;
  d.log(`Display tab drew ${drawn.width}x${drawn.height} (${drawn.lit} lit samples) ${d.metrics.displayOpenToDrawnMs} ms after Open Display`);
  const first = await followsView(d, f, 'the guest to take the tab\'s size');
  d.log(`the guest follows the tab: ${sizeText(first)}`);
  assert.equal(await f.locator('#note').textContent(), '', 'no "kept its size" note');
  await w.shot('display-tab');

  // The sidebar goes: the editor area, and so the tab, grows; the guest follows within 2 s.
  await w.command('View: Toggle Primary Side Bar Visibility');
  s = Date.now();
  const wider = await followsView(d, f, 'the guest to follow the wider tab', first);
  d.metrics.displayResizeMs = Date.now() - s;
  d.log(`sidebar hidden: the guest went ${sizeText(first)} -> ${sizeText(wider)} in ${d.metrics.displayResizeMs} ms`);
  assert.ok(wider.width > first.width, 'wider without the sidebar');
  assert.ok(Number(d.metrics.displayResizeMs) < 2000, `the guest followed within 2 s (${d.metrics.displayResizeMs} ms)`);
  assert.ok(await litPixels(f), 'still drawn after the resize');
  await w.shot('display-tab-sidebar-hidden');
  await w.command('View: Toggle Primary Side Bar Visibility');
  await followsView(d, f, 'the guest to follow the tab back', wider);
}

/** In the dark theme: the tab again (revealed from the palette), for its screenshot. */
export async function displayDark(d: DisplayStepDeps): Promise<void> {
  await d.w.command('Dev VMs: Open Display');
  await d.w.pick(d.vm);
  const f = await d.w.webview(displayTitle(d.vm));
  await until('the console drawn in the Display tab', 30_000, () => litPixels(f), 500);
  await d.w.shot('display-tab');
}
