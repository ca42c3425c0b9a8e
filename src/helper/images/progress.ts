/** Progress of an image build, from what mmdebstrap prints. */

export type ProgressFn = (message: string, fraction?: number) => void;

/**
 * Turns mmdebstrap --verbose output into (message, fraction) updates. Stages come from its
 * "I: ..." lines, positions within a stage from apt/dpkg per-package lines counted against
 * apt's "N newly installed". Fractions 0..1 of the whole mmdebstrap run.
 */
export class MmdebstrapProgress {
  private stage: { from: number; to: number; perPackage: number } = { from: 0, to: 0.02, perPackage: 0 };
  private total = 0;
  private done = 0;
  private partial = '';
  private lastFraction = -1;
  private lastMessage = '';

  constructor(private readonly report: (message: string, fraction: number) => void) {}

  // [marker, start, end, per-package lines expected in the stage (0: none), message];
  // the spans follow a measured 77 s run (essential 10-29 s, the rest 29-67 s).
  private static readonly STAGES: Array<[RegExp, number, number, number, string]> = [
    [/^I: running apt-get update/, 0.0, 0.03, 0, 'downloading and installing packages'],
    [/^I: downloading packages/, 0.03, 0.07, 1, 'downloading and installing packages'],
    [/^I: extracting archives/, 0.07, 0.13, 0, 'downloading and installing packages'],
    [/^I: installing essential packages/, 0.13, 0.37, 2, 'downloading and installing packages'],
    [/^I: installing remaining packages/, 0.37, 0.86, 3, 'downloading and installing packages'],
    [/^devvm: configuring the image/, 0.86, 0.87, 0, 'configuring the image'],
    [/^devvm: generating the initramfs/, 0.87, 0.97, 0, 'generating the initramfs'],
    [/^I: cleaning package lists/, 0.97, 0.99, 0, 'cleaning up'],
    [/^I: success/, 1, 1, 0, 'downloading and installing packages'],
  ];

  feed(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop() ?? '';
    for (const l of lines) this.line(l.trim());
  }

  private line(l: string): void {
    const stage = MmdebstrapProgress.STAGES.find(([re]) => re.test(l));
    if (stage) {
      // The package count stays: the essential stage installs what the download stage counted.
      this.stage = { from: stage[1], to: stage[2], perPackage: stage[3] };
      this.done = 0;
      return this.emit(stage[4], stage[1]);
    }
    const n = /^\d+ upgraded, (\d+) newly installed/.exec(l);
    if (n) {
      this.total = Number(n[1]);
      return;
    }
    if (!this.stage.perPackage || !this.total || !/^(Get:\d+ |Unpacking |Setting up )/.test(l)) return;
    this.done++;
    const f = Math.min(1, this.done / (this.total * this.stage.perPackage));
    this.emit(this.lastMessage, this.stage.from + (this.stage.to - this.stage.from) * f);
  }

  private emit(message: string, fraction: number): void {
    // Only visible changes: a new message or at least half a percent.
    if (message === this.lastMessage && fraction - this.lastFraction < 0.005) return;
    this.lastMessage = message;
    this.lastFraction = fraction;
    this.report(message, fraction);
  }
}
