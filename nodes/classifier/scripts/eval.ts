/**
 * `npm run eval [-- --json] [--model DIR] [--out DIR] [--list FILE] [--no-peer] [--record]`
 *
 * Scores the held-out split (or `--list FILE`: lines `RELATIVE_PATH ham|spam`,
 * paths relative to the list's folder) with the committed model and, when
 * bogofilter is installed, with bogofilter trained on the same train part in
 * the same run. Prints a table; with `--json` the last line is one JSON
 * object (f1, fpr, accuracy, auc, ...). Writes `report.json` and `roc.svg`
 * to `--out` (default `nodes/classifier/report/`). `--record` stores the
 * model's figures in the model's manifest.json (documentation only).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseLabelledList } from "../corpus.js";
import { evaluate, summaryJson } from "../eval.js";
import type { ClassifierFigures } from "../eval.js";
import { DEFAULT_MODEL_DIR, MODEL_FILES, writeManifest } from "../model-io.js";
import type { ModelManifest } from "../model-io.js";
import { renderReportSvg } from "../plot.js";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const pct = (x: number): string => (Number.isNaN(x) ? "n/a" : (x * 100).toFixed(2) + "%");

function row(f: ClassifierFigures): string {
  const m = f.metrics;
  const c = m.confusion;
  return [
    f.name.padEnd(24),
    m.accuracy.toFixed(4).padStart(8),
    m.precision.toFixed(4).padStart(9),
    m.recall.toFixed(4).padStart(7),
    m.f1.toFixed(4).padStart(7),
    pct(m.fpr).padStart(7),
    pct(f.hardHamFpr).padStart(8),
    m.auc.toFixed(5).padStart(8),
    `${c.tp}/${c.fp}/${c.tn}/${c.fn}`.padStart(16),
    Math.round(f.perSecond).toString().padStart(8),
  ].join(" ");
}

async function main(): Promise<void> {
  const json = process.argv.includes("--json");
  const modelDir = arg("--model") ?? DEFAULT_MODEL_DIR;
  const here = dirname(fileURLToPath(import.meta.url));
  const outDir = arg("--out") ?? join(here, "..", "report");
  const listFile = arg("--list");
  const list = listFile ? parseLabelledList(readFileSync(listFile, "utf8")) : undefined;
  const report = await evaluate({
    modelDir,
    ...(list ? { list, baseDir: dirname(resolve(listFile!)) } : {}),
    peer: !process.argv.includes("--no-peer"),
  });

  console.log(`held-out: ${report.scored} mails scored, both classifiers trained on ${report.trainedOn} (train part)`);
  console.log(`${"classifier".padEnd(24)} accuracy precision  recall      f1     fpr hard-fpr      auc   tp/fp/tn/fn     mails/s`);
  console.log(row(report.model));
  if (report.modelParsed) console.log(row(report.modelParsed));
  for (const p of report.peers) console.log(row(p));
  if (report.peerSkipped) console.log(`bogofilter: skipped (${report.peerSkipped})`);
  console.log("per group (called spam / n):");
  for (const f of [report.model, ...(report.modelParsed ? [report.modelParsed] : []), ...report.peers]) {
    console.log(`  ${f.name.padEnd(24)} ${f.groups.map((g) => `${g.group} ${g.calledSpam}/${g.n}`).join("  ")}`);
  }

  mkdirSync(outDir, { recursive: true });
  const svg = renderReportSvg(
    `Held-out split (${report.scored} mails): model ${report.model.version}`,
    [report.model, ...report.peers].map((f) => ({ name: f.name, scores: f.scores, threshold: f.metrics.threshold })),
    report.spam,
  );
  writeFileSync(join(outDir, "roc.svg"), svg);
  const summary = summaryJson(report);
  const errors = report.paths
    .map((p, i) => ({ path: p, spam: report.spam[i], score: report.model.scores[i]! }))
    .filter((e) => (e.score >= report.model.metrics.threshold) !== e.spam);
  writeFileSync(join(outDir, "report.json"), JSON.stringify({ summary, model_errors: errors }, null, 2) + "\n");
  console.log(`report: ${join(outDir, "report.json")}, plot: ${join(outDir, "roc.svg")}`);

  if (process.argv.includes("--record") && !list) {
    const path = join(modelDir, MODEL_FILES.manifest);
    const manifest = JSON.parse(readFileSync(path, "utf8")) as ModelManifest;
    const m = report.model.metrics;
    writeManifest(modelDir, {
      ...manifest,
      metrics: {
        split: "nodes/classifier/data/test-split.txt",
        threshold: m.threshold,
        accuracy: m.accuracy, precision: m.precision, recall: m.recall, f1: m.f1, fpr: m.fpr, auc: m.auc,
        hardHamFpr: report.model.hardHamFpr,
        confusion: m.confusion,
      },
    });
    console.log(`recorded metrics in ${path}`);
  }
  if (json) console.log(JSON.stringify(summary));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
