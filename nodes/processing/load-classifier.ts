import { loadClassifier } from "../classifier/index.js";
import type { MailClassifier } from "./classifier.js";
import { passThroughClassifier } from "./classifier.js";

/**
 * Resolves the classifier a processing node runs with: `none` is the
 * pass-through classifier (nothing is ever quarantined); absent, the
 * committed TensorFlow.js model; otherwise the model in that folder. A
 * missing or corrupt model rejects with the classifier's typed error
 * (CLASSIFIER_MODEL_MISSING / CLASSIFIER_MODEL_CORRUPT), and the node's
 * main.ts refuses to start.
 */
export async function loadMailClassifier(modelDir: string | undefined): Promise<MailClassifier> {
  if (modelDir === "none") return passThroughClassifier;
  return loadClassifier(modelDir === undefined ? {} : { modelDir });
}
