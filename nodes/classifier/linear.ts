/**
 * The model's maths in TensorFlow.js: a Dense(1, sigmoid) layer over the
 * sparse hashed input, evaluated without materialising the dense input.
 *
 * `x · W + b` for a sparse `x` is `Σ W[i]·x[i]` over its non-zeros, i.e.
 * `gatherND` + `mul` + `sparseSegmentSum` per mail; the result equals
 * `model.predict` on the dense multi-hot input (a test pins this), at a
 * fraction of the cost (the dense batch would be 64 × 2^18 floats).
 * Training uses the same forward pass with an explicit gradient
 * (`scatterND`), because the wasm backend has no `UnsortedSegmentSum` kernel
 * for the gradient of a gather.
 *
 * @module
 */
import { tf } from "./backend.js";
import type { SparseFeatures } from "./features.js";

/** A batch of sparse rows packed for TensorFlow.js. */
export interface PackedBatch {
  /** Input index of each non-zero. */
  readonly indices: Int32Array;
  /** Value of each non-zero. */
  readonly values: Float32Array;
  /** Row (mail) of each non-zero; non-decreasing. */
  readonly segments: Int32Array;
  /** Number of rows. */
  readonly rows: number;
}

/**
 * Packs rows for {@link linearLogits}. Every row must have at least one
 * non-zero (the extractor always emits the constant `bias` feature), so that
 * `sparseSegmentSum` yields one output per row.
 */
export function packBatch(rows: readonly SparseFeatures[]): PackedBatch {
  let nnz = 0;
  for (const r of rows) nnz += r.indices.length;
  const indices = new Int32Array(nnz);
  const values = new Float32Array(nnz);
  const segments = new Int32Array(nnz);
  let o = 0;
  rows.forEach((r, row) => {
    if (r.indices.length === 0) throw new RangeError(`row ${row} has no features`);
    indices.set(r.indices, o);
    values.set(r.values, o);
    segments.fill(row, o, o + r.indices.length);
    o += r.indices.length;
  });
  return { indices, values, segments, rows: rows.length };
}

/** Appends rows into reusable buffers and packs them without per-row copies. */
export class BatchBuilder {
  private indices = new Int32Array(1 << 15);
  private values = new Float32Array(1 << 15);
  private segments = new Int32Array(1 << 15);
  private nnz = 0;
  private rows = 0;

  /** Appends one row (copied; `row` may be reused by the caller afterwards). */
  push(row: SparseFeatures): void {
    const k = row.indices.length;
    if (k === 0) throw new RangeError(`row ${this.rows} has no features`);
    if (this.nnz + k > this.indices.length) this.grow(this.nnz + k);
    this.indices.set(row.indices, this.nnz);
    this.values.set(row.values, this.nnz);
    this.segments.fill(this.rows, this.nnz, this.nnz + k);
    this.nnz += k;
    this.rows++;
  }

  /** The rows pushed since the last `reset`, as views valid until the next `push` or `reset`. */
  build(): PackedBatch {
    return {
      indices: this.indices.subarray(0, this.nnz),
      values: this.values.subarray(0, this.nnz),
      segments: this.segments.subarray(0, this.nnz),
      rows: this.rows,
    };
  }

  /** Empties the batch. */
  reset(): void {
    this.nnz = 0;
    this.rows = 0;
  }

  private grow(min: number): void {
    const size = Math.max(min, 2 * this.indices.length);
    const i = new Int32Array(size);
    i.set(this.indices.subarray(0, this.nnz));
    const v = new Float32Array(size);
    v.set(this.values.subarray(0, this.nnz));
    const s = new Int32Array(size);
    s.set(this.segments.subarray(0, this.nnz));
    this.indices = i;
    this.values = v;
    this.segments = s;
  }
}

let iota = new Int32Array(0);

/** `[0, 1, ..., n-1]`, from a cached buffer (cheaper than `tf.range` per batch). */
function positions(n: number): Int32Array {
  if (iota.length < n) {
    iota = new Int32Array(Math.max(n, 2 * iota.length));
    for (let i = 0; i < iota.length; i++) iota[i] = i;
  }
  return iota.subarray(0, n);
}

/** Logits `x · kernel + bias` of a packed batch (shape `[rows]`). Caller disposes. */
export function linearLogits(kernel: tf.Tensor1D, bias: tf.Tensor1D, batch: PackedBatch): tf.Tensor1D {
  return tf.tidy(() => {
    const nnz = batch.indices.length;
    // gatherND: the wasm backend's GatherV2 kernel is ~10x slower on a 1-D table.
    const idx = tf.tensor2d(batch.indices, [nnz, 1], "int32");
    const vals = tf.tensor1d(batch.values, "float32");
    const seg = tf.tensor1d(batch.segments, "int32");
    const contrib = tf.mul(tf.gatherND(kernel, idx), vals);
    const sums = tf.sparse.sparseSegmentSum(contrib, tf.tensor1d(positions(nnz), "int32"), seg) as tf.Tensor1D;
    return tf.add(sums, bias);
  });
}

/** Spam probabilities of a packed batch, computed in TensorFlow.js. */
export function linearScores(kernel: tf.Tensor1D, bias: tf.Tensor1D, batch: PackedBatch): Float32Array {
  const probs = tf.tidy(() => tf.sigmoid(linearLogits(kernel, bias, batch)));
  try {
    return probs.dataSync() as Float32Array;
  } finally {
    probs.dispose();
  }
}

/** A packed batch as tensors; the caller disposes them with {@link disposeBatch}. */
export interface BatchTensors {
  /** Indices, shape `[nnz, 1]` (for `gatherND` / `scatterND`). */
  readonly idx: tf.Tensor2D;
  readonly vals: tf.Tensor1D;
  readonly seg: tf.Tensor1D;
  /** `seg` as `[nnz, 1]`, for `gatherND` in the gradient. */
  readonly seg2: tf.Tensor2D;
  readonly positions: tf.Tensor1D;
  readonly rows: number;
}

/** Uploads a packed batch. */
export function batchTensors(batch: PackedBatch): BatchTensors {
  return {
    idx: tf.tensor2d(batch.indices, [batch.indices.length, 1], "int32"),
    vals: tf.tensor1d(batch.values, "float32"),
    seg: tf.tensor1d(batch.segments, "int32"),
    seg2: tf.tensor2d(batch.segments, [batch.segments.length, 1], "int32"),
    positions: tf.tensor1d(positions(batch.indices.length), "int32"),
    rows: batch.rows,
  };
}

/** Frees the tensors of {@link batchTensors}. */
export function disposeBatch(t: BatchTensors): void {
  tf.dispose([t.idx, t.vals, t.seg, t.seg2, t.positions]);
}

/**
 * `linearLogits` with the gradient written out, for training on the wasm
 * backend: `dL/dW = scatterND(index, dL/dz[row] · value)` (duplicates sum),
 * `dL/db = Σ dL/dz`. The batch tensors must outlive the gradient computation
 * (create them outside `optimizer.minimize`).
 */
export function trainableLogits(kernel: tf.Variable, bias: tf.Variable, t: BatchTensors): tf.Tensor1D {
  const dim = kernel.shape[0]!;
  const f = tf.customGrad((...args: unknown[]) => {
    const [w, b] = args as [tf.Tensor1D, tf.Tensor1D];
    const contrib = tf.mul(tf.gatherND(w, t.idx), t.vals);
    const value = tf.add(tf.sparse.sparseSegmentSum(contrib, t.positions, t.seg), b) as tf.Tensor1D;
    const gradFunc = (dy: tf.Tensor1D): tf.Tensor[] => {
      const perNonZero = tf.mul(tf.gatherND(dy, t.seg2), t.vals);
      const dW = tf.scatterND(t.idx, perNonZero, [dim]);
      const dB = tf.reshape(tf.sum(dy), [1]);
      return [dW, dB];
    };
    return { value, gradFunc };
  });
  return f(kernel, bias) as tf.Tensor1D;
}
