/**
 * A hand-written SVG report figure: score histograms (ham vs spam) of each
 * classifier on the left, their ROC curves (log-scaled false-positive axis)
 * on the right. Pure: data in, SVG text out.
 *
 * @module
 */
import { rocCurve } from "./metrics.js";

/** One classifier's scores on the evaluated set. */
export interface PlotSeries {
  /** Legend name. */
  readonly name: string;
  readonly scores: ArrayLike<number>;
  /** Threshold drawn on the histogram. */
  readonly threshold: number;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const f = (n: number): string => n.toFixed(1);

/** Renders the figure for `series` (all scored on the same mails, `spam[i]` the truth). */
export function renderReportSvg(title: string, series: readonly PlotSeries[], spam: ArrayLike<boolean>): string {
  const W = 920;
  const rowH = 170;
  const histH = Math.max(1, series.length) * rowH;
  const H = Math.max(histH, 360) + 70;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`);

  // Histograms: 50 bins on [0,1], bar height on a log(1+count) scale.
  const bins = 50;
  series.forEach((s, k) => {
    const x0 = 50, y0 = 45 + k * rowH, w = 380, h = rowH - 45;
    const ham = new Array<number>(bins).fill(0);
    const sp = new Array<number>(bins).fill(0);
    for (let i = 0; i < s.scores.length; i++) {
      const b = Math.min(bins - 1, Math.max(0, Math.floor(s.scores[i]! * bins)));
      if (spam[i]) sp[b]!++;
      else ham[b]!++;
    }
    const max = Math.log1p(Math.max(1, ...ham, ...sp));
    parts.push(`<text x="${x0}" y="${y0 - 6}">${esc(s.name)}: score histogram (log count)</text>`);
    parts.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#999"/>`);
    const bw = w / bins;
    for (let b = 0; b < bins; b++) {
      for (const [counts, color, off] of [[ham, "#2ca02c", 0], [sp, "#d62728", bw / 2]] as const) {
        const c = counts[b]!;
        if (!c) continue;
        const bh = (Math.log1p(c) / max) * (h - 4);
        parts.push(`<rect x="${f(x0 + b * bw + off)}" y="${f(y0 + h - bh)}" width="${f(bw / 2)}" height="${f(bh)}" fill="${color}" opacity="0.8"><title>${c}</title></rect>`);
      }
    }
    const tx = x0 + s.threshold * w;
    parts.push(`<line x1="${f(tx)}" y1="${y0}" x2="${f(tx)}" y2="${y0 + h}" stroke="black" stroke-dasharray="4 3"/>`);
    parts.push(`<text x="${x0}" y="${y0 + h + 13}">0</text><text x="${x0 + w}" y="${y0 + h + 13}" text-anchor="end">1</text>`);
    parts.push(`<text x="${x0 + w - 4}" y="${y0 + 12}" text-anchor="end"><tspan fill="#2ca02c">ham</tspan> / <tspan fill="#d62728">spam</tspan></text>`);
  });

  // ROC, x = FPR on a log scale from 1e-4 to 1, y = TPR from 0.8 to 1 (the interesting corner).
  const rx = 510, ry = 45, rw = 380, rh = 300;
  const xMin = -4;
  const X = (fpr: number): number => rx + ((Math.log10(Math.max(fpr, 1e-4)) - xMin) / -xMin) * rw;
  const Y = (tpr: number): number => ry + rh - ((Math.max(tpr, 0.8) - 0.8) / 0.2) * rh;
  parts.push(`<text x="${rx}" y="${ry - 6}">ROC (false-positive rate log scale, true-positive rate 0.8-1)</text>`);
  parts.push(`<rect x="${rx}" y="${ry}" width="${rw}" height="${rh}" fill="none" stroke="#999"/>`);
  for (const e of [-4, -3, -2, -1, 0]) {
    const x = X(10 ** e);
    parts.push(`<line x1="${f(x)}" y1="${ry}" x2="${f(x)}" y2="${ry + rh}" stroke="#eee"/><text x="${f(x)}" y="${ry + rh + 13}" text-anchor="middle">1e${e}</text>`);
  }
  for (const t of [0.8, 0.85, 0.9, 0.95, 1]) {
    const y = Y(t);
    parts.push(`<line x1="${rx}" y1="${f(y)}" x2="${rx + rw}" y2="${f(y)}" stroke="#eee"/><text x="${rx - 4}" y="${f(y + 4)}" text-anchor="end">${t}</text>`);
  }
  series.forEach((s, k) => {
    const pts = rocCurve(s.scores, spam);
    const d: string[] = [];
    let prev = pts[0]!;
    for (const p of pts) {
      // Step curve: horizontal then vertical.
      d.push(`${f(X(p.fpr))},${f(Y(prev.tpr))}`, `${f(X(p.fpr))},${f(Y(p.tpr))}`);
      prev = p;
    }
    const color = COLORS[k % COLORS.length]!;
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.6" points="${d.join(" ")}"/>`);
    parts.push(`<text x="${rx + rw - 6}" y="${ry + rh - 10 - 14 * k}" text-anchor="end" fill="${color}">${esc(s.name)}</text>`);
  });
  parts.push(`</svg>`);
  return parts.join("\n") + "\n";
}
