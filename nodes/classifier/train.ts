/**
 * Training core: logistic regression (one Dense unit, sigmoid) over the
 * hashed sparse features, trained in TensorFlow.js on the wasm backend with
 * AdaGrad, L2 regularisation and seeded shuffling, so a run is reproducible
 * on the same platform. The result is a `tf.LayersModel` (topology +
 * weights) ready for `saveModel`.
 *
 * @module
 */
import { tf } from "./backend.js";
import type { SparseFeatures } from "./features.js";
import { batchTensors, disposeBatch, packBatch, trainableLogits } from "./linear.js";

/** Hyper-parameters of a training run (chosen by cross-validation on the train part, see README). */
export interface TrainConfig {
  /** Seed of the shuffling PRNG. @default 20020801 */
  readonly seed: number;
  /** Passes over the data. @default 15 */
  readonly epochs: number;
  /** Mails per gradient step. @default 4 */
  readonly batchSize: number;
  /** AdaGrad learning rate. @default 0.5 */
  readonly learningRate: number;
  /** L2 penalty `l2 · ΣW²` added to the mean batch loss. @default 1e-7 */
  readonly l2: number;
}

/** Default {@link TrainConfig}. */
export const DEFAULT_TRAIN_CONFIG: TrainConfig = Object.freeze({
  seed: 20020801,
  epochs: 15,
  batchSize: 4,
  learningRate: 0.5,
  l2: 1e-7,
});

/** Progress of a training run, reported after every step. */
export interface TrainProgress {
  readonly epoch: number;
  readonly epochs: number;
  readonly step: number;
  readonly steps: number;
  /** Mean loss of the epoch so far. */
  readonly loss: number;
}

/** mulberry32: a small seeded PRNG; returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The model's topology: Dense(1, sigmoid) over `dim` inputs. */
export function buildModel(dim: number): tf.Sequential {
  return tf.sequential({
    name: "fastemailnet_spam",
    layers: [
      tf.layers.dense({
        name: "spam_logit",
        units: 1,
        inputShape: [dim],
        activation: "sigmoid",
        kernelInitializer: "zeros",
        biasInitializer: "zeros",
      }),
    ],
  });
}

/**
 * Trains on `examples` (labels: 1 spam, 0 ham) and returns the model.
 * Deterministic for a given input order, config and platform.
 */
export async function trainModel(
  examples: readonly SparseFeatures[],
  labels: ArrayLike<number>,
  dim: number,
  config: TrainConfig = DEFAULT_TRAIN_CONFIG,
  onProgress?: (p: TrainProgress) => void,
): Promise<tf.Sequential> {
  if (examples.length !== labels.length) throw new RangeError("examples and labels differ in length");
  const kernel = tf.variable(tf.zeros([dim]), true, "kernel") as tf.Variable<tf.Rank.R1>;
  const bias = tf.variable(tf.zeros([1]), true, "bias") as tf.Variable<tf.Rank.R1>;
  const optimizer = tf.train.adagrad(config.learningRate, 1e-6);
  const rand = mulberry32(config.seed);
  const order = Array.from(examples.keys());
  const steps = Math.ceil(order.length / config.batchSize);
  try {
    for (let epoch = 1; epoch <= config.epochs; epoch++) {
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      let lossSum = 0;
      for (let step = 0; step < steps; step++) {
        const ids = order.slice(step * config.batchSize, (step + 1) * config.batchSize);
        const batch = batchTensors(packBatch(ids.map((i) => examples[i]!)));
        const y = tf.tensor1d(Float32Array.from(ids, (i) => labels[i]!));
        try {
          const loss = optimizer.minimize(() => {
            const logits = trainableLogits(kernel, bias, batch);
            const data = tf.losses.sigmoidCrossEntropy(y, logits) as tf.Scalar;
            return tf.add(data, tf.mul(config.l2, tf.sum(tf.square(kernel)))) as tf.Scalar;
          }, true, [kernel, bias]);
          lossSum += loss ? (await loss.data())[0]! : 0;
          loss?.dispose();
        } finally {
          disposeBatch(batch);
          y.dispose();
        }
        onProgress?.({ epoch, epochs: config.epochs, step: step + 1, steps, loss: lossSum / (step + 1) });
      }
    }
    const model = buildModel(dim);
    tf.tidy(() => model.layers[0]!.setWeights([tf.reshape(kernel, [dim, 1]), bias]));
    return model;
  } finally {
    kernel.dispose();
    bias.dispose();
    optimizer.dispose();
  }
}
