/**
 * Evaluation core: score a labelled list with the TensorFlow.js model and,
 * when available, with bogofilter trained on the same train part, in the
 * same run; compute the figures of both (plus the hard-ham false-positive
 * rate and per-group counts). Used by `npm run eval` and by the tests that
 * pin the documented metrics.
 *
 * @module
 */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { simpleParser } from "mailparser";
import { BogofilterPeer, BOGOFILTER_THRESHOLD, ensureBogofilter, writeContentOnlyCopies } from "./bogofilter.js";
import { DEFAULT_THRESHOLD, loadClassifier } from "./classifier.js";
import { corpusDir, listCorpus, partition, readTestSplit } from "./corpus.js";
import type { LabelledMail } from "./corpus.js";
import { computeMetrics } from "./metrics.js";
import { MAILPARSER_OPTIONS } from "./parsed.js";
import type { Metrics } from "./metrics.js";

/** Counts of one corpus group. */
export interface GroupFigures {
  readonly group: string;
  readonly n: number;
  /** Mails called spam. */
  readonly calledSpam: number;
}

/** Figures of one classifier on the evaluated list. */
export interface ClassifierFigures {
  readonly name: string;
  /** Model version (TensorFlow.js model) or peer description. */
  readonly version: string;
  readonly metrics: Metrics;
  /** False-positive rate on the `hard-ham*` groups (`NaN` when there are none). */
  readonly hardHamFpr: number;
  readonly hardHamFalsePositives: number;
  readonly groups: readonly GroupFigures[];
  /** Mails scored per second, reading the files included (second, warm pass). */
  readonly perSecond: number;
  /** Scores in list order. */
  readonly scores: Float64Array;
}

/** Options of {@link evaluate}. */
export interface EvaluateOptions {
  /** Corpus `data/` folder. @default the installed devDependency */
  readonly dataDir?: string;
  /** Labelled mails to score, paths relative to `baseDir`. @default the committed test split */
  readonly list?: readonly LabelledMail[];
  /** Folder the list's paths are relative to. @default `dataDir` */
  readonly baseDir?: string;
  /** Model directory. @default the committed model */
  readonly modelDir?: string;
  /** Verdict threshold of the model. @default {@link DEFAULT_THRESHOLD} */
  readonly threshold?: number;
  /** Run bogofilter when it is installed. @default true */
  readonly peer?: boolean;
  /** Also run bogofilter on header-stripped copies (the model's view). @default true */
  readonly peerContentOnly?: boolean;
  /** Also score through mailparser + `classifyParsed`. @default true */
  readonly parsedPath?: boolean;
  /** Inference batch size. @default 64 */
  readonly batchSize?: number;
}

/** Everything `npm run eval` reports. */
export interface EvalReport {
  /** Mails in the train part (what both classifiers learnt from). */
  readonly trainedOn: number;
  readonly scored: number;
  readonly spam: readonly boolean[];
  readonly paths: readonly string[];
  /** The model on the `classifyRaw` path (the headline figures). */
  readonly model: ClassifierFigures;
  /** The same model fed by `mailparser` + `classifyParsed`, when requested. */
  readonly modelParsed?: ClassifierFigures;
  /** bogofilter runs, empty when it is not installed or disabled. */
  readonly peers: readonly ClassifierFigures[];
  /** Why the peer did not run, if it did not. */
  readonly peerSkipped?: string;
}

function figures(name: string, version: string, list: readonly LabelledMail[], scores: Float64Array, threshold: number, seconds: number): ClassifierFigures {
  const spam = list.map((m) => m.label === "spam");
  const metrics = computeMetrics(scores, spam, threshold);
  const groups = new Map<string, { n: number; calledSpam: number }>();
  let hardN = 0, hardFp = 0;
  list.forEach((m, i) => {
    const g = groups.get(m.group) ?? { n: 0, calledSpam: 0 };
    g.n++;
    const called = scores[i]! >= threshold;
    if (called) g.calledSpam++;
    groups.set(m.group, g);
    if (m.label === "ham" && m.group.startsWith("hard-ham")) {
      hardN++;
      if (called) hardFp++;
    }
  });
  return {
    name,
    version,
    metrics,
    hardHamFpr: hardN ? hardFp / hardN : NaN,
    hardHamFalsePositives: hardFp,
    groups: [...groups].sort(([a], [b]) => (a < b ? -1 : 1)).map(([group, g]) => ({ group, ...g })),
    perSecond: list.length / seconds,
    scores,
  };
}

/** Scores the list with the model (and bogofilter) and computes all figures. */
export async function evaluate(opts: EvaluateOptions = {}): Promise<EvalReport> {
  const dataDir = opts.dataDir ?? corpusDir();
  const split = readTestSplit();
  const { train } = partition(listCorpus(dataDir), split);
  const list = opts.list ?? split;
  const baseDir = opts.baseDir ?? dataDir;
  const threshold = opts.threshold ?? DEFAULT_THRESHOLD;
  const files = list.map((m) => join(baseDir, m.path));

  const classifier = await loadClassifier({ modelDir: opts.modelDir, batchSize: opts.batchSize });
  let model: ClassifierFigures;
  let modelParsed: ClassifierFigures | undefined;
  try {
    // One untimed pass warms the JIT (and the page cache), like the peer's second call below.
    await classifier.classifyRaw(files.map((f) => readFileSync(f)));
    const start = process.hrtime.bigint();
    const raw = files.map((f) => readFileSync(f));
    const scores = Float64Array.from(await classifier.classifyRaw(raw), (s) => s.score);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    model = figures("tfjs-model", classifier.version, list, scores, threshold, seconds);
    if (opts.parsedPath !== false) {
      // The same model fed by mailparser (`classifyParsed`), as a node that already parsed the mail does.
      const t0 = process.hrtime.bigint();
      const parsed = await Promise.all(files.map((f) => simpleParser(readFileSync(f), MAILPARSER_OPTIONS)));
      const s2 = Float64Array.from(await classifier.classifyParsed(parsed), (s) => s.score);
      const sec2 = Number(process.hrtime.bigint() - t0) / 1e9;
      modelParsed = figures("tfjs-model-mailparser", classifier.version, list, s2, threshold, sec2);
    }
  } finally {
    classifier.dispose();
  }

  const peers: ClassifierFigures[] = [];
  let peerSkipped: string | undefined;
  if (opts.peer === false) peerSkipped = "disabled";
  else if (!ensureBogofilter((line) => process.stderr.write(`${line}\n`))) peerSkipped = "bogofilter is not installed and could not be (apt-get install bogofilter)";
  else {
    const full = BogofilterPeer.train(dataDir, train);
    try {
      full.score(files);
      const run = full.score(files);
      peers.push(figures("bogofilter", "full mail (transport headers included)", list, run.scores, BOGOFILTER_THRESHOLD, run.seconds));
    } finally {
      full.close();
    }
    if (opts.peerContentOnly !== false) {
      const trainCopy = writeContentOnlyCopies(dataDir, train);
      const listCopy = writeContentOnlyCopies(baseDir, list);
      const stripped = BogofilterPeer.train(trainCopy, train);
      try {
        const copies = list.map((m) => join(listCopy, m.path));
        stripped.score(copies);
        const run = stripped.score(copies);
        peers.push(figures("bogofilter-content-only", "Subject + MIME headers + body, like the model", list, run.scores, BOGOFILTER_THRESHOLD, run.seconds));
      } finally {
        stripped.close();
        rmSync(trainCopy, { recursive: true, force: true });
        rmSync(listCopy, { recursive: true, force: true });
      }
    }
  }
  return {
    trainedOn: train.length,
    scored: list.length,
    spam: list.map((m) => m.label === "spam"),
    paths: list.map((m) => m.path),
    model,
    ...(modelParsed ? { modelParsed } : {}),
    peers,
    ...(peerSkipped ? { peerSkipped } : {}),
  };
}

/** The one-line JSON summary (`npm run eval -- --json` prints it last). */
export function summaryJson(r: EvalReport): Record<string, unknown> {
  const m = r.model.metrics;
  const peer = r.peers[0];
  const round = (x: number): number => Math.round(x * 1e6) / 1e6;
  return {
    model: r.model.version,
    scored: r.scored,
    trained_on: r.trainedOn,
    threshold: m.threshold,
    accuracy: round(m.accuracy),
    precision: round(m.precision),
    recall: round(m.recall),
    f1: round(m.f1),
    fpr: round(m.fpr),
    auc: round(m.auc),
    hard_ham_fpr: round(r.model.hardHamFpr),
    confusion: m.confusion,
    per_second: Math.round(r.model.perSecond),
    ...(r.modelParsed
      ? { mailparser_path: { f1: round(r.modelParsed.metrics.f1), fpr: round(r.modelParsed.metrics.fpr), auc: round(r.modelParsed.metrics.auc), confusion: r.modelParsed.metrics.confusion, per_second: Math.round(r.modelParsed.perSecond) } }
      : {}),
    ...Object.fromEntries(
      r.peers.map((p) => [
        p.name.replace(/-/g, "_"),
        {
          f1: round(p.metrics.f1), fpr: round(p.metrics.fpr), accuracy: round(p.metrics.accuracy), auc: round(p.metrics.auc),
          hard_ham_fpr: round(p.hardHamFpr), confusion: p.metrics.confusion, per_second: Math.round(p.perSecond),
        },
      ]),
    ),
    ...(peer ? { beats_bogofilter: m.f1 > peer.metrics.f1 && m.fpr < peer.metrics.fpr } : { peer_skipped: r.peerSkipped }),
  };
}
