/**
 * `npm run bench:classify [-- --reps N] [--batch B]`
 *
 * Speed of the spam classifier on one core, on the held-out split (1,139
 * SpamAssassin mails), next to bogofilter scoring the same files in the same
 * run. The headline path is `classifyRaw` — the classifier's own MIME read
 * + feature hashing + TensorFlow.js (wasm) inference in batches of 64 — which
 * is what the processing node calls, with the same batch size, single-threaded
 * (wasm threads are off in Node). Stage rates are printed too, and, for
 * comparison, the mailparser-fed path (`simpleParser`, then `classifyParsed`),
 * whose cost is mailparser's. The last line is one JSON object.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { simpleParser } from "mailparser";
import { BogofilterPeer, ensureBogofilter } from "../../nodes/classifier/bogofilter.js";
import { DEFAULT_BATCH_SIZE, loadClassifier } from "../../nodes/classifier/classifier.js";
import { corpusDir, listCorpus, partition, readTestSplit } from "../../nodes/classifier/corpus.js";
import { FeatureExtractor } from "../../nodes/classifier/features.js";
import { parseMime } from "../../nodes/classifier/mime.js";
import { MAILPARSER_OPTIONS } from "../../nodes/classifier/parsed.js";
import { benchCli } from "./args.js";

const cli = benchCli("bench:classify", "usage: npm run bench:classify -- [--reps 7] [--batch 64]", {
  reps: { type: "string", default: "7" }, batch: { type: "string", default: String(DEFAULT_BATCH_SIZE) },
});

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

/** Runs `fn` `reps` times after one warm-up; returns the median rate in mails/s. */
async function rate(n: number, reps: number, fn: () => unknown): Promise<number> {
  await fn();
  const rates: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    await fn();
    rates.push(n / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  return median(rates);
}

async function main(): Promise<void> {
  const reps = cli.count("reps", 1);
  const batchSize = cli.count("batch", 1);
  const dataDir = corpusDir();
  const split = readTestSplit();
  const { train } = partition(listCorpus(dataDir), split);
  const files = split.map((m) => join(dataDir, m.path));
  const raws = files.map((f) => readFileSync(f));
  const bytes = raws.reduce((n, r) => n + r.length, 0);
  const n = raws.length;

  const classifier = await loadClassifier({ batchSize });
  const extractor = new FeatureExtractor(classifier.manifest.features);

  const parseOnly = await rate(n, reps, () => raws.map((r) => parseMime(r)));
  const parseFeatures = await rate(n, reps, () => raws.map((r) => extractor.extract(parseMime(r))));
  const fullWithReads = await rate(n, reps, () => classifier.classifyRaw(files.map((f) => readFileSync(f))));
  // For comparison: the model fed by mailparser (simpleParser, then classifyParsed in batches of
  // 64), end to end and the classifier's share alone. The node calls classifyRaw instead.
  const viaMailparser = await rate(n, reps, async () => {
    for (let i = 0; i < n; i += batchSize) {
      const parsed = await Promise.all(raws.slice(i, i + batchSize).map((r) => simpleParser(r, MAILPARSER_OPTIONS)));
      await classifier.classifyParsed(parsed);
    }
  });
  const parsedAll = await Promise.all(raws.map((r) => simpleParser(r, MAILPARSER_OPTIONS)));
  const parsedOnly = await rate(n, reps, () => classifier.classifyParsed(parsedAll));

  // Headline pair: classifyRaw and bogofilter timed alternately, so load from other
  // processes on the machine hits both alike; medians of `reps` runs each.
  const peer = ensureBogofilter((line) => console.error(line)) ? BogofilterPeer.train(dataDir, train) : undefined;
  const ours: number[] = [];
  const theirs: number[] = [];
  try {
    await classifier.classifyRaw(raws);
    peer?.score(files);
    for (let r = 0; r < reps; r++) {
      const t0 = process.hrtime.bigint();
      await classifier.classifyRaw(raws);
      ours.push(n / (Number(process.hrtime.bigint() - t0) / 1e9));
      if (peer) theirs.push(peer.score(files).perSecond);
    }
  } finally {
    peer?.close();
    classifier.dispose();
  }
  const full = median(ours);
  const bogofilter = peer ? median(theirs) : undefined;

  const fmt = (x: number): string => Math.round(x).toString().padStart(7);
  console.log(`mails: ${n} (held-out split, ${(bytes / n / 1024).toFixed(1)} KiB mean), batch ${batchSize}, median of ${reps} runs, one thread`);
  console.log(`  parse (mime.ts)                              ${fmt(parseOnly)} mails/s`);
  console.log(`  parse + features                             ${fmt(parseFeatures)} mails/s`);
  console.log(`  classifyRaw: parse + features + tfjs (node)  ${fmt(full)} mails/s`);
  console.log(`  same, reading each file from disk            ${fmt(fullWithReads)} mails/s`);
  console.log(`  mailparser + classifyParsed (comparison)     ${fmt(viaMailparser)} mails/s`);
  console.log(`  classifyParsed alone, mail already parsed    ${fmt(parsedOnly)} mails/s`);
  if (bogofilter !== undefined) {
    console.log(`  bogofilter -t -B (same files, one process)   ${fmt(bogofilter)} mails/s`);
    console.log(`  ratio classifyRaw / bogofilter: ${(full / bogofilter).toFixed(2)}x (with file reads: ${(fullWithReads / bogofilter).toFixed(2)}x)`);
    console.log(`  ratio mailparser + classifyParsed / bogofilter: ${(viaMailparser / bogofilter).toFixed(2)}x`);
  } else console.log("  bogofilter: not installed, skipped");
  console.log(
    JSON.stringify({
      mails: n,
      batch: batchSize,
      reps,
      model_per_second: Math.round(full),
      model_with_reads_per_second: Math.round(fullWithReads),
      parse_per_second: Math.round(parseOnly),
      parse_features_per_second: Math.round(parseFeatures),
      mailparser_path_per_second: Math.round(viaMailparser),
      classify_parsed_only_per_second: Math.round(parsedOnly),
      bogofilter_per_second: bogofilter === undefined ? null : Math.round(bogofilter),
      ratio: bogofilter === undefined ? null : Number((full / bogofilter).toFixed(3)),
      ratio_with_reads: bogofilter === undefined ? null : Number((fullWithReads / bogofilter).toFixed(3)),
      ratio_mailparser_path: bogofilter === undefined ? null : Number((viaMailparser / bogofilter).toFixed(3)),
    }),
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
