import type { JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { FenError, bucketSpecs, consumerSpecs, streamSpecs } from "../../protocol/index.js";
import type { BucketSpec, SpecOptions } from "../../protocol/index.js";
import { isNotFound } from "../common/js-errors.js";

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

/**
 * Creates every stream, consumer and bucket FastEmailNet needs, idempotently:
 * an object whose configuration equals the spec is left alone; one that
 * differs is an error (SPEC_MISMATCH) naming the field, never silently
 * changed.
 */
export async function provision(nc: NatsConnection, jsm: JetStreamManager, opts: SpecOptions): Promise<ProvisionStep[]> {
  const steps: ProvisionStep[] = [];
  for (const spec of streamSpecs(opts)) {
    try {
      const info = await jsm.streams.info(spec.name);
      compare("stream", spec.name, { ...spec }, info.config as unknown as Record<string, unknown>);
      steps.push({ kind: "stream", name: spec.name, action: "unchanged" });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await jsm.streams.add({ ...spec } as Partial<StreamConfig> as StreamConfig);
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
      await jsm.consumers.add(stream, cfg);
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
      if (b.kind === "kv") await new Kvm(js).create(b.name, { replicas: b.replicas, history: b.history });
      else await new Objm(js).create(b.name, { replicas: b.replicas });
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
