/**
 * A one-line text progress bar for long runs (training), written to a given
 * stream (stderr by the scripts) and redrawn at most every `minIntervalMs`.
 * The clock is injected so tests are deterministic.
 *
 * @module
 */

/** Where the bar is drawn. */
export interface ProgressSink {
  write(chunk: string): unknown;
  /** True on a terminal: redraw in place with `\r`; otherwise print a line per redraw. */
  readonly isTTY?: boolean;
}

/** A progress bar. */
export interface ProgressBar {
  /** Sets progress to `done` of `total` with a status text. */
  update(done: number, total: number, status: string): void;
  /** Draws the final state and ends the line. */
  finish(status: string): void;
}

/** Renders the bar text for `done / total` (pure). */
export function renderBar(label: string, done: number, total: number, status: string, width = 30): string {
  const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const full = Math.round(frac * width);
  return `${label} [${"#".repeat(full)}${"-".repeat(width - full)}] ${(frac * 100).toFixed(0).padStart(3)}% ${status}`;
}

/** Creates a progress bar on `sink`. */
export function createProgressBar(
  sink: ProgressSink,
  label: string,
  opts: { now?: () => number; minIntervalMs?: number } = {},
): ProgressBar {
  const now = opts.now ?? (() => performance.now());
  const minInterval = opts.minIntervalMs ?? (sink.isTTY ? 100 : 2000);
  let last = -Infinity;
  let lastDone = 0, lastTotal = 0;
  const draw = (text: string, final: boolean): void => {
    if (sink.isTTY) sink.write(`\r${text}\x1b[K${final ? "\n" : ""}`);
    else sink.write(text + "\n");
  };
  return {
    update(done, total, status) {
      lastDone = done;
      lastTotal = total;
      const t = now();
      if (t - last < minInterval) return;
      last = t;
      draw(renderBar(label, done, total, status), false);
    },
    finish(status) {
      draw(renderBar(label, lastTotal || lastDone, lastTotal || lastDone, status), true);
    },
  };
}
