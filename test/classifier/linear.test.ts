import { beforeAll, describe, expect, it } from "vitest";
import { initBackend, tf } from "../../nodes/classifier/backend.js";
import type { SparseFeatures } from "../../nodes/classifier/features.js";
import { BatchBuilder, batchTensors, disposeBatch, linearScores, packBatch, trainableLogits } from "../../nodes/classifier/linear.js";
import { buildModel, mulberry32, trainModel } from "../../nodes/classifier/train.js";

const DIM = 64;

function randomRows(n: number, seed: number): SparseFeatures[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, () => {
    const set = new Set<number>([DIM - 1]);
    const k = 1 + Math.floor(r() * 10);
    while (set.size < k) set.add(Math.floor(r() * DIM));
    const indices = Int32Array.from(set);
    return { indices, values: Float32Array.from(indices, () => r() * 2 - 1) };
  });
}

function dense(rows: readonly SparseFeatures[]): tf.Tensor2D {
  const x = new Float32Array(rows.length * DIM);
  rows.forEach((row, i) => row.indices.forEach((j, k) => (x[i * DIM + j] = x[i * DIM + j]! + row.values[k]!)));
  return tf.tensor2d(x, [rows.length, DIM]);
}

beforeAll(async () => {
  await initBackend();
});

describe("sparse linear inference in TensorFlow.js", () => {
  it("runs on the wasm backend", () => {
    expect(tf.getBackend()).toBe("wasm");
  });

  it("equals model.predict on the dense multi-hot input", () => {
    const model = buildModel(DIM);
    const r = mulberry32(7);
    model.layers[0]!.setWeights([tf.tensor2d(Array.from({ length: DIM }, () => [r() * 4 - 2])), tf.tensor1d([0.3])]);
    const rows = randomRows(50, 1);
    const x = dense(rows);
    const expected = (model.predict(x) as tf.Tensor).dataSync();
    const [k, b] = model.layers[0]!.getWeights();
    const kernel = tf.reshape(k!, [-1]) as tf.Tensor1D;
    const got = linearScores(kernel, b as tf.Tensor1D, packBatch(rows));
    expect(got.length).toBe(50);
    for (let i = 0; i < 50; i++) expect(got[i]!).toBeCloseTo(expected[i]!, 5);
    tf.dispose([x, kernel]);
    model.dispose();
  });

  it("has the dense gradient (explicit scatterND gradient, duplicates summed)", () => {
    const rows = randomRows(8, 2);
    rows.push({ indices: Int32Array.from([3, 3, DIM - 1]), values: Float32Array.from([0.5, 0.25, 1]) });
    const y = tf.tensor1d(rows.map((_, i) => i % 2));
    const w = tf.variable(tf.randomNormal([DIM], 0, 1, "float32", 3)) as tf.Variable<tf.Rank.R1>;
    const b = tf.variable(tf.tensor1d([0.1])) as tf.Variable<tf.Rank.R1>;
    const t = batchTensors(packBatch(rows));
    const sparse = tf.variableGrads(() => tf.losses.sigmoidCrossEntropy(y, trainableLogits(w, b, t)) as tf.Scalar, [w, b]);
    const x = dense(rows);
    const denseGrads = tf.grads((wt: tf.Tensor, bt: tf.Tensor) =>
      tf.losses.sigmoidCrossEntropy(y, tf.add(tf.reshape(tf.matMul(x, tf.reshape(wt, [DIM, 1])), [-1]), bt)),
    )([w, b]);
    const a = sparse.grads[w.name]!.dataSync();
    const e = denseGrads[0]!.dataSync();
    for (let i = 0; i < DIM; i++) expect(a[i]!).toBeCloseTo(e[i]!, 5);
    expect(sparse.grads[b.name]!.dataSync()[0]!).toBeCloseTo(denseGrads[1]!.dataSync()[0]!, 5);
    disposeBatch(t);
    tf.dispose([y, w, b, x, sparse.value, ...Object.values(sparse.grads), ...denseGrads]);
  });
});

describe("BatchBuilder", () => {
  it("packs like packBatch, grows past its initial capacity, and resets", () => {
    const big: SparseFeatures = { indices: Int32Array.from({ length: 20000 }, (_, i) => i % DIM), values: new Float32Array(20000).fill(0.5) };
    const rows = [...randomRows(3, 9), big, ...randomRows(3, 10)];
    const b = new BatchBuilder();
    b.push(randomRows(1, 11)[0]!);
    b.reset();
    for (const r of rows) b.push(r);
    const got = b.build();
    const want = packBatch(rows);
    expect(got.rows).toBe(want.rows);
    expect(Array.from(got.indices)).toEqual(Array.from(want.indices));
    expect(Array.from(got.values)).toEqual(Array.from(want.values));
    expect(Array.from(got.segments)).toEqual(Array.from(want.segments));
    expect(() => b.push({ indices: new Int32Array(0), values: new Float32Array(0) })).toThrow(RangeError);
  });
});

describe("trainModel", () => {
  // A separable toy problem: feature 0 means spam, feature 1 means ham.
  const rows: SparseFeatures[] = [];
  const labels: number[] = [];
  for (let i = 0; i < 40; i++) {
    const spam = i % 2;
    rows.push({ indices: Int32Array.from([spam ? 0 : 1, 2 + (i % 5), DIM - 1]), values: Float32Array.from([1, 0.5, 1]) });
    labels.push(spam);
  }
  const config = { seed: 1, epochs: 5, batchSize: 8, learningRate: 0.5, l2: 1e-6 };

  it("learns, reports progress, and is reproducible for a seed", async () => {
    const seen: number[] = [];
    const m1 = await trainModel(rows, labels, DIM, config, (p) => seen.push(p.epoch));
    const m2 = await trainModel(rows, labels, DIM, config);
    const w1 = m1.layers[0]!.getWeights()[0]!.dataSync();
    const w2 = m2.layers[0]!.getWeights()[0]!.dataSync();
    expect(Array.from(w1)).toEqual(Array.from(w2));
    expect(w1[0]!).toBeGreaterThan(0.5);
    expect(w1[1]!).toBeLessThan(-0.5);
    expect(seen).toHaveLength(5 * 5);
    const scores = (m1.predict(dense(rows)) as tf.Tensor).dataSync();
    labels.forEach((l, i) => expect(scores[i]! >= 0.5 ? 1 : 0).toBe(l));
    m1.dispose();
    m2.dispose();
  });
});
