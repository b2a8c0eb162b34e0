/**
 * The committed model on disk, read and written without any network or
 * `file://` IO handler: TensorFlow.js artifacts go through
 * `tf.io.withSaveHandler` / `tf.io.fromMemory` and plain `fs`.
 *
 * A model directory holds three files:
 * - `model.json`: TensorFlow.js layers-model JSON (topology + weights manifest);
 * - `weights.bin`: the weights, little-endian float32;
 * - `manifest.json`: {@link ModelManifest}: format and feature configuration,
 *   the version hash, the default threshold and the documented metrics.
 *
 * The version is the first 16 hex digits of SHA-256 over `model.json`,
 * `weights.bin` and the canonical JSON of the feature configuration; loading
 * recomputes it, so a swapped or damaged file is refused.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { tf } from "./backend.js";
import { ClassifierError, ClassifierErrorCode } from "./errors.js";
import { FEATURE_VERSION, inputDim, NUMERIC_FEATURES } from "./features.js";
import type { FeatureConfig } from "./features.js";

/** Version of the on-disk layout. */
export const MODEL_FORMAT_VERSION = 1;

/** The model directory shipped in the repository. */
export const DEFAULT_MODEL_DIR = join(dirname(fileURLToPath(import.meta.url)), "model");

/** File names inside a model directory. */
export const MODEL_FILES = Object.freeze({ manifest: "manifest.json", topology: "model.json", weights: "weights.bin" });

/** `manifest.json`. */
export interface ModelManifest {
  /** Always `"fastemailnet-spam-classifier"`. */
  readonly format: "fastemailnet-spam-classifier";
  /** Must equal {@link MODEL_FORMAT_VERSION}. */
  readonly formatVersion: number;
  /** Version hash (16 hex digits), see the module comment. */
  readonly version: string;
  /** Feature configuration the model was trained with. */
  readonly features: FeatureConfig;
  /** Names of the numeric features, in input order (documentation and a consistency check). */
  readonly numericFeatures: readonly string[];
  /** Threshold used for the documented metrics. */
  readonly threshold: number;
  /** Free-form training provenance (config, counts). */
  readonly training: Readonly<Record<string, unknown>>;
  /** Documented held-out metrics (free-form, reproduced by the tests). */
  readonly metrics: Readonly<Record<string, unknown>>;
}

/** A model as loaded from disk. */
export interface LoadedModel {
  readonly manifest: ModelManifest;
  readonly model: tf.LayersModel;
}

/** Canonical JSON: object keys sorted, so the hash does not depend on key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return "{" + entries.map(([k, v]) => JSON.stringify(k) + ":" + canonicalJson(v)).join(",") + "}";
  }
  return JSON.stringify(value);
}

/** The version hash of a model's files and feature configuration. */
export function modelVersion(topology: Uint8Array, weights: Uint8Array, features: FeatureConfig): string {
  const h = createHash("sha256");
  h.update(topology);
  h.update(weights);
  h.update(canonicalJson(features));
  return h.digest("hex").slice(0, 16);
}

function joinWeightData(data: ArrayBuffer | ArrayBuffer[]): Uint8Array {
  if (!Array.isArray(data)) return new Uint8Array(data);
  const total = data.reduce((n, b) => n + b.byteLength, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const b of data) {
    out.set(new Uint8Array(b), o);
    o += b.byteLength;
  }
  return out;
}

/**
 * Writes `model` with its manifest into `dir` (created if needed) and
 * returns the manifest. The output is byte-for-byte reproducible.
 */
export async function saveModel(
  model: tf.LayersModel,
  dir: string,
  meta: Pick<ModelManifest, "features" | "threshold" | "training" | "metrics">,
): Promise<ModelManifest> {
  let topologyBytes: Uint8Array | undefined;
  let weightBytes: Uint8Array | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      weightBytes = joinWeightData(artifacts.weightData ?? []);
      const json = {
        format: "layers-model",
        generatedBy: "TensorFlow.js tfjs-layers v4.22.0",
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: [MODEL_FILES.weights], weights: artifacts.weightSpecs ?? [] }],
      };
      topologyBytes = Buffer.from(JSON.stringify(json) + "\n");
      return { modelArtifactsInfo: { dateSaved: new Date(0), modelTopologyType: "JSON" } };
    }),
  );
  if (!topologyBytes || !weightBytes) throw new ClassifierError(ClassifierErrorCode.ModelCorrupt, "model.save produced no artifacts");
  const manifest: ModelManifest = {
    format: "fastemailnet-spam-classifier",
    formatVersion: MODEL_FORMAT_VERSION,
    version: modelVersion(topologyBytes, weightBytes, meta.features),
    features: meta.features,
    numericFeatures: [...NUMERIC_FEATURES],
    threshold: meta.threshold,
    training: meta.training,
    metrics: meta.metrics,
  };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, MODEL_FILES.topology), topologyBytes);
  writeFileSync(join(dir, MODEL_FILES.weights), weightBytes);
  writeManifest(dir, manifest);
  return manifest;
}

/** Rewrites `manifest.json` (e.g. to record metrics); the version does not cover it. */
export function writeManifest(dir: string, manifest: ModelManifest): void {
  writeFileSync(join(dir, MODEL_FILES.manifest), JSON.stringify(manifest, null, 2) + "\n");
}

function readModelFile(dir: string, name: string): Buffer {
  try {
    return readFileSync(join(dir, name));
  } catch (cause) {
    throw new ClassifierError(ClassifierErrorCode.ModelMissing, `cannot read model file ${join(dir, name)}`, { cause });
  }
}

function parseJson(bytes: Buffer, name: string): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch (cause) {
    throw new ClassifierError(ClassifierErrorCode.ModelCorrupt, `model file ${name} is not valid JSON`, { cause });
  }
}

function corrupt(name: string, what: string): ClassifierError {
  return new ClassifierError(ClassifierErrorCode.ModelCorrupt, `model file ${name}: ${what}`);
}

function checkManifest(raw: unknown): ModelManifest {
  const name = MODEL_FILES.manifest;
  if (!raw || typeof raw !== "object") throw corrupt(name, "not an object");
  const m = raw as Record<string, unknown>;
  if (m.format !== "fastemailnet-spam-classifier") throw corrupt(name, "wrong format tag");
  if (m.formatVersion !== MODEL_FORMAT_VERSION) {
    throw new ClassifierError(ClassifierErrorCode.ModelIncompatible, `model format version ${String(m.formatVersion)} is not ${MODEL_FORMAT_VERSION}`);
  }
  if (typeof m.version !== "string" || !/^[0-9a-f]{16}$/.test(m.version)) throw corrupt(name, "bad version");
  const f = m.features as Record<string, unknown> | undefined;
  if (!f || typeof f !== "object") throw corrupt(name, "missing features");
  for (const k of ["version", "hashBits", "salt", "maxTokens", "structWeight", "subjectWeight"]) {
    if (typeof f[k] !== "number" || !Number.isFinite(f[k])) throw corrupt(name, `features.${k} is not a number`);
  }
  if (f.version !== FEATURE_VERSION) {
    throw new ClassifierError(ClassifierErrorCode.ModelIncompatible, `model feature version ${String(f.version)} is not ${FEATURE_VERSION}`);
  }
  const bits = f.hashBits as number;
  if (!Number.isInteger(bits) || bits < 8 || bits > 24) throw corrupt(name, "features.hashBits out of range");
  const numeric = m.numericFeatures;
  if (!Array.isArray(numeric) || numeric.join(",") !== NUMERIC_FEATURES.join(",")) {
    throw new ClassifierError(ClassifierErrorCode.ModelIncompatible, "model numeric features differ from this code's");
  }
  if (typeof m.threshold !== "number" || !(m.threshold > 0 && m.threshold < 1)) throw corrupt(name, "bad threshold");
  return raw as ModelManifest;
}

/**
 * Reads and verifies a model directory.
 * @throws {ClassifierError} `CLASSIFIER_MODEL_MISSING`, `CLASSIFIER_MODEL_CORRUPT`,
 *   `CLASSIFIER_MODEL_HASH_MISMATCH` or `CLASSIFIER_MODEL_INCOMPATIBLE`.
 */
export async function loadModel(dir: string = DEFAULT_MODEL_DIR): Promise<LoadedModel> {
  const manifestBytes = readModelFile(dir, MODEL_FILES.manifest);
  const topologyBytes = readModelFile(dir, MODEL_FILES.topology);
  const weightBytes = readModelFile(dir, MODEL_FILES.weights);
  const manifest = checkManifest(parseJson(manifestBytes, MODEL_FILES.manifest));
  const topo = parseJson(topologyBytes, MODEL_FILES.topology) as Record<string, unknown> | null;
  const groups = topo?.weightsManifest as Array<{ paths?: unknown; weights?: tf.io.WeightsManifestEntry[] }> | undefined;
  if (!topo || typeof topo.modelTopology !== "object" || !Array.isArray(groups) || groups.length !== 1 || !Array.isArray(groups[0]?.weights)) {
    throw corrupt(MODEL_FILES.topology, "not a single-group layers model");
  }
  const specs = groups[0].weights;
  const dim = inputDim(manifest.features);
  const expected = specs.reduce((n, s) => n + 4 * (s.shape ?? []).reduce((a: number, b: number) => a * b, 1), 0);
  if (specs.some((s) => s.dtype !== "float32") || expected !== weightBytes.length) {
    throw corrupt(MODEL_FILES.weights, `size ${weightBytes.length} does not match the weights manifest (${expected} bytes)`);
  }
  // Exactly a kernel [dim, 1] and a bias [1]: the classifier reads those two (a Dense layer without its bias
  // has one weight, and other shapes are another model).
  const shapes = specs.map((s) => JSON.stringify(s.shape ?? []));
  if (shapes.length !== 2 || shapes[0] !== JSON.stringify([dim, 1]) || shapes[1] !== JSON.stringify([1])) {
    throw corrupt(MODEL_FILES.topology, `weights ${shapes.join(", ")}; expected a kernel [${dim},1] and a bias [1]`);
  }
  // A training run that diverged writes NaN or infinite weights: every score would be NaN, and NaN >= any
  // threshold is false, so nothing would ever be flagged (and NaN is no JSON number for the events).
  const values = new Float32Array(weightBytes.buffer.slice(weightBytes.byteOffset, weightBytes.byteOffset + weightBytes.byteLength));
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw corrupt(MODEL_FILES.weights, `weight ${bad} is ${values[bad]}, not a finite number`);
  const version = modelVersion(topologyBytes, weightBytes, manifest.features);
  if (version !== manifest.version) {
    throw new ClassifierError(ClassifierErrorCode.ModelHashMismatch, `model files hash to ${version}, manifest says ${manifest.version}`);
  }
  let model: tf.LayersModel;
  try {
    const weightData = weightBytes.buffer.slice(weightBytes.byteOffset, weightBytes.byteOffset + weightBytes.byteLength);
    model = await tf.loadLayersModel(
      tf.io.fromMemory({ modelTopology: topo.modelTopology as object, weightSpecs: specs, weightData }),
    );
  } catch (cause) {
    throw new ClassifierError(ClassifierErrorCode.ModelCorrupt, "TensorFlow.js cannot build the model from its files", { cause });
  }
  const shape = model.inputs[0]?.shape;
  const layer = model.layers[0];
  if (model.layers.length !== 1 || shape?.[1] !== dim || model.outputs[0]?.shape[1] !== 1 || layer?.getConfig().activation !== "sigmoid") {
    model.dispose();
    throw corrupt(MODEL_FILES.topology, `expected one Dense(1, sigmoid) layer over ${dim} inputs`);
  }
  return { manifest, model };
}
