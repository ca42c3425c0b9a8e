/** A one-line progress display on a TTY (stderr); silent otherwise so output stays parseable. */
export class ProgressLine {
  private timer: NodeJS.Timeout | null = null;
  private message = '';
  private frame = 0;
  private readonly started = Date.now();

  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  get enabled(): boolean {
    return Boolean(this.out.isTTY);
  }

  update(message: string, fraction?: number): void {
    if (!this.enabled) return;
    this.message = fraction === undefined ? message : `${message} ${Math.round(fraction * 100)}%`;
    this.timer ??= setInterval(() => this.draw(), 100);
    this.draw();
  }

  private draw(): void {
    const spin = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏'[this.frame++ % 10];
    const secs = Math.round((Date.now() - this.started) / 1000);
    const cols = this.out.columns || 80;
    this.out.write(`\r\x1b[K${`${spin} ${this.message} (${secs}s)`.slice(0, cols - 1)}`);
  }

  done(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.enabled && this.message) this.out.write('\r\x1b[K');
  }
}
