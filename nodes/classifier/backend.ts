/**
 * TensorFlow.js on the wasm backend, offline: the `.wasm` binaries are read
 * from the installed `@tensorflow/tfjs-backend-wasm` package, never fetched.
 * Wasm threads are off in Node, so one process runs inference on one core;
 * scale out with `worker_threads` or more processes.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { ClassifierError, ClassifierErrorCode } from "./errors.js";

let ready: Promise<void> | undefined;

/** Folder holding the wasm backend's `.wasm` files (with a trailing slash). */
export function wasmDir(): string {
  const req = createRequire(import.meta.url);
  return dirname(req.resolve("@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm")) + "/";
}

/**
 * Selects the wasm backend once per process (idempotent).
 * @throws {ClassifierError} `CLASSIFIER_BACKEND_FAILED` when the backend cannot start.
 */
export function initBackend(): Promise<void> {
  ready ??= (async () => {
    try {
      setWasmPaths(wasmDir());
      const ok = await tf.setBackend("wasm");
      if (!ok) throw new Error("tf.setBackend('wasm') returned false");
      await tf.ready();
    } catch (cause) {
      ready = undefined;
      throw new ClassifierError(ClassifierErrorCode.BackendFailed, "cannot initialise the TensorFlow.js wasm backend", { cause });
    }
  })();
  return ready;
}

export { tf };
