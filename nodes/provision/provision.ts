import type { JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { FenError, bucketSpecs, consumerSpecs, streamSpecs } from "../../protocol/index.js";
import type { BucketSpec, SpecOptions } from "../../protocol/index.js";
import type { Clock } from "../common/clock.js";
import { isNoPlacement, isNotFound } from "../common/js-errors.js";

/** What provisioning did with one object. */
export interface ProvisionStep {
  readonly kind: "stream" | "consumer" | "kv" | "object";
  readonly name: string;
  readonly action: "created" | "unchanged";
}

function compare(kind: string, name: string, want: Record<string, unknown>, have: Record<string, unknown>): void {
  for (const [field, value] of Object.entries(want)) {
    const got = have[field];
    if (JSON.stringify(got) !== JSON.stringify(value)) {
      throw new FenError("SPEC_MISMATCH",
        `${kind} ${name}: field ${field} is ${JSON.stringify(got)} on the server but the spec says ${JSON.stringify(value)}; ` +
        `change it with 'nats ${kind === "consumer" ? "consumer" : "stream"} edit' or remove it`);
    }
  }
}

/** Stream fields a KV/object bucket spec pins, in server terms. */
function bucketStreamFields(b: BucketSpec): Record<string, unknown> {
  const fields: Record<string, unknown> = b.kind === "kv" ? { num_replicas: b.replicas, max_msgs_per_subject: b.history } : { num_replicas: b.replicas };
  if (b.allow_atomic) fields.allow_atomic = true;
  return fields;
}

/** How provisioning waits for a cluster that cannot place a replicated asset yet. */
export interface PlacementWait {
  /** Give up (PLACEMENT_FAILED) after this long per asset. @default 60_000 */
  readonly timeoutMs?: number;
  /** Pause between attempts. @default 500 */
  readonly intervalMs?: number;
  /** Told of every refused attempt (for a progress log line). */
  readonly onWait?: (what: string, reason: string, waitedMs: number) => void;
  /** Measures the wait. */
  readonly clock: Clock;
}

/**
 * Runs `create` until JetStream stops answering "no suitable peers for
 * placement" (10005). A just-started or just-restarted cluster answers that
 * until its meta leader has heard a statsz from enough peers, which no
 * monitoring endpoint shows beforehand; in CI it happened seconds after
 * every server was healthy and the meta group current. Any other error is
 * thrown at once.
 */
export async function placed<T>(what: string, create: () => Promise<T>, wait: PlacementWait): Promise<T> {
  const timeoutMs = wait.timeoutMs ?? 60_000;
  const { clock } = wait;
  const start = clock.now();
  for (;;) {
    try {
      return await create();
    } catch (err) {
      if (!isNoPlacement(err)) throw err;
      const waited = clock.now() - start;
      const reason = (err as Error).message;
      if (waited >= timeoutMs) {
        throw new FenError("PLACEMENT_FAILED", `${what}: JetStream still answers "${reason}" after ${waited} ms; are all servers up and routed?`, { cause: err });
      }
      wait.onWait?.(what, reason, waited);
      await new Promise((r) => setTimeout(r, wait.intervalMs ?? 500));
    }
  }
}

/**
 * Creates every stream, consumer and bucket FastEmailNet needs, idempotently:
 * an object whose configuration equals the spec is left alone; one that
 * differs is an error (SPEC_MISMATCH) naming the field, never silently
 * changed. A creation the cluster cannot place yet is retried (see
 * `placed`) until `wait.timeoutMs`.
 */
export async function provision(nc: NatsConnection, jsm: JetStreamManager, opts: SpecOptions, wait: PlacementWait): Promise<ProvisionStep[]> {
  const steps: ProvisionStep[] = [];
  for (const spec of streamSpecs(opts)) {
    try {
      const info = await jsm.streams.info(spec.name);
      compare("stream", spec.name, { ...spec }, info.config as unknown as Record<string, unknown>);
      steps.push({ kind: "stream", name: spec.name, action: "unchanged" });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await placed(`stream ${spec.name}`, () => jsm.streams.add({ ...spec } as Partial<StreamConfig> as StreamConfig), wait);
      steps.push({ kind: "stream", name: spec.name, action: "created" });
    }
  }
  for (const spec of consumerSpecs()) {
    const { stream, ...cfg } = spec;
    try {
      const info = await jsm.consumers.info(stream, spec.durable_name);
      compare("consumer", `${stream}/${spec.durable_name}`, cfg, info.config as unknown as Record<string, unknown>);
      steps.push({ kind: "consumer", name: `${stream}/${spec.durable_name}`, action: "unchanged" });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await placed(`consumer ${stream}/${spec.durable_name}`, () => jsm.consumers.add(stream, cfg), wait);
      steps.push({ kind: "consumer", name: `${stream}/${spec.durable_name}`, action: "created" });
    }
  }
  const js = jetstream(nc);
  for (const b of bucketSpecs(opts)) {
    const stream = b.kind === "kv" ? `KV_${b.name}` : `OBJ_${b.name}`;
    try {
      const info = await jsm.streams.info(stream);
      compare(b.kind === "kv" ? "kv" : "object", b.name, bucketStreamFields(b), info.config as unknown as Record<string, unknown>);
      steps.push({ kind: b.kind, name: b.name, action: "unchanged" });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await placed<unknown>(`${b.kind} ${b.name}`, () => b.kind === "kv"
        ? new Kvm(js).create(b.name, { replicas: b.replicas, history: b.history })
        : new Objm(js).create(b.name, { replicas: b.replicas }), wait);
      // The bucket APIs cannot set it at creation; an update right after can.
      if (b.allow_atomic) {
        const info = await jsm.streams.info(stream);
        await jsm.streams.update(stream, { ...info.config, allow_atomic: true });
      }
      steps.push({ kind: b.kind, name: b.name, action: "created" });
    }
  }
  return steps;
}
