import type { JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { BUCKET_STREAM_LIMITS, FenError, bucketSpecs, consumerSpecs, streamSpecs } from "../../protocol/index.js";
import type { BucketSpec, SpecOptions } from "../../protocol/index.js";
import type { Clock } from "../common/clock.js";
import { isNoPlacement, isNotFound, isRequestTimeout } from "../common/js-errors.js";

/** What provisioning did with one object. */
export interface ProvisionStep {
  readonly kind: "stream" | "consumer" | "kv" | "object";
  readonly name: string;
  readonly action: "created" | "unchanged" | "updated";
  /** For "updated": the fields changed, as `field: old → new`. */
  readonly changed?: readonly string[];
}

/** A field's value as messages show it; a field the server does not report is "unset". */
const shown = (v: unknown): string => (v === undefined ? "unset" : JSON.stringify(v));

/**
 * The step for an object that exists: "unchanged" when every field the spec
 * pins has the spec's value (a field pinned as undefined: unset on the
 * server); otherwise "updated" through `update` when `mode.update` asks for
 * it, or when every differing field is one of `completes` (set by a step of
 * our own creation that did not run: the object was never complete), else
 * SPEC_MISMATCH naming the first field.
 */
async function settle(
  kind: ProvisionStep["kind"], name: string, want: Record<string, unknown>, have: Record<string, unknown>,
  mode: ProvisionMode, update: () => Promise<unknown>, completes: readonly string[] = [],
): Promise<ProvisionStep> {
  const diffs = Object.entries(want)
    .filter(([field, value]) => JSON.stringify(have[field]) !== JSON.stringify(value))
    .map(([field, value]) => ({ field, have: shown(have[field]), want: shown(value) }));
  if (diffs.length === 0) return { kind, name, action: "unchanged" };
  if (!mode.update && !diffs.every((d) => completes.includes(d.field))) {
    const [d] = diffs as [typeof diffs[number]];
    throw new FenError("SPEC_MISMATCH",
      `${kind} ${name}: field ${d.field} is ${d.have} on the server but the spec says ${d.want}` +
      `${diffs.length > 1 ? ` (and ${diffs.length - 1} more field(s) differ)` : ""}; ` +
      `provision with update${mode.updateHint ? ` (${mode.updateHint})` : ""}, change it with 'nats ${kind === "consumer" ? "consumer" : "stream"} edit', or remove it`);
  }
  await update();
  return { kind, name, action: "updated", changed: diffs.map((d) => `${d.field}: ${d.have} → ${d.want}`) };
}

/** Stream fields a KV/object bucket spec pins, in server terms. */
function bucketStreamFields(b: BucketSpec): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    // storage: a bucket made in memory by hand loses every status record, ledger block or queued body on a restart.
    ...BUCKET_STREAM_LIMITS, storage: "file", num_replicas: b.replicas, ...(b.kind === "kv" ? { max_msgs_per_subject: b.history } : {}),
  };
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
 * every server was healthy and the meta group current. A create that got no
 * answer in time (a busy just-started cluster; seen in CI) is sent again
 * too: creating an object that exists with the same configuration is a
 * no-op, so whether the first one was applied does not matter. Any other
 * error is thrown at once.
 */
export async function placed<T>(what: string, create: () => Promise<T>, wait: PlacementWait): Promise<T> {
  const timeoutMs = wait.timeoutMs ?? 60_000;
  const { clock } = wait;
  const start = clock.now();
  for (;;) {
    try {
      return await create();
    } catch (err) {
      if (!isNoPlacement(err) && !isRequestTimeout(err)) throw err;
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

/** How provisioning treats an object whose configuration differs from the spec. */
export interface ProvisionMode {
  /**
   * Update it to the spec (an operator's explicit choice, e.g. after an
   * upgrade changed a spec) instead of failing. The server refuses fields
   * that cannot change in place (e.g. a stream's retention or storage);
   * that error is passed on. @default false
   */
  readonly update?: boolean;
  /**
   * How an operator asks for `update` where this provisioning runs, for the
   * SPEC_MISMATCH message: `npm start -- --update-specs` locally, `--update`
   * for nodes/provision/main.ts. @default none (the message says "provision with update")
   */
  readonly updateHint?: string;
}

/**
 * Creates every stream, consumer and bucket FastEmailNet needs, idempotently:
 * an object whose configuration equals the spec is left alone; one that
 * differs is an error (SPEC_MISMATCH) naming the field, never silently
 * changed, unless `mode.update` asks for it to be updated. A creation the
 * cluster cannot place yet is retried (see `placed`) until `wait.timeoutMs`.
 */
export async function provision(
  nc: NatsConnection, jsm: JetStreamManager, opts: SpecOptions, wait: PlacementWait, mode: ProvisionMode = {},
): Promise<ProvisionStep[]> {
  const steps: ProvisionStep[] = [];
  for (const spec of streamSpecs(opts)) {
    try {
      const info = await jsm.streams.info(spec.name);
      steps.push(await settle("stream", spec.name, { ...spec }, info.config as unknown as Record<string, unknown>, mode,
        () => jsm.streams.update(spec.name, { ...info.config, ...spec } as Partial<StreamConfig> as StreamConfig)));
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
      steps.push(await settle("consumer", `${stream}/${spec.durable_name}`, cfg, info.config as unknown as Record<string, unknown>, mode,
        () => jsm.consumers.update(stream, spec.durable_name, cfg)));
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
      const want = bucketStreamFields(b);
      // A bucket whose allow_atomic is all that differs is one whose creation stopped (a timeout, a kill) between
      // the bucket API's create and the update that sets it (below): completed, not refused.
      steps.push(await settle(b.kind, b.name, want, info.config as unknown as Record<string, unknown>, mode,
        () => placed(`${b.kind} ${b.name}`, () => jsm.streams.update(stream, { ...info.config, ...want } as StreamConfig), wait),
        b.allow_atomic ? ["allow_atomic"] : []));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await placed<unknown>(`${b.kind} ${b.name}`, () => b.kind === "kv"
        ? new Kvm(js).create(b.name, { replicas: b.replicas, history: b.history })
        : new Objm(js).create(b.name, { replicas: b.replicas }), wait);
      // The bucket APIs cannot set it at creation; an update right after can (again, when it got no answer in
      // time: setting it twice is a no-op). A start stopped before it is completed by the next (see above).
      if (b.allow_atomic) {
        await placed(`${b.kind} ${b.name} (allow_atomic)`, async () => {
          const info = await jsm.streams.info(stream);
          if (info.config.allow_atomic !== true) await jsm.streams.update(stream, { ...info.config, allow_atomic: true });
        }, wait);
      }
      steps.push({ kind: b.kind, name: b.name, action: "created" });
    }
  }
  return steps;
}
