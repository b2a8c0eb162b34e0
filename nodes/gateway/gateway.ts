import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import type { Service } from "@nats-io/services";
import { Codecs, Names, ServiceSubjects } from "../../protocol/index.js";
import type { Actor, ActorStatus } from "../common/actor.js";
import type { Clock } from "../common/clock.js";
import type { Metrics } from "../common/metrics.js";
import type { Logger } from "../common/logger.js";
import { openMailStateStore } from "../common/mail-state.js";
import { STORE_READ_ATTEMPT_MS } from "../common/js-errors.js";
import { requestsSettled, serveEndpoint } from "../common/rpc.js";
import type { GatewayConfig } from "../config/index.js";
import { createStatusHandler } from "./status.js";
import { createSubmitHandler } from "./submit.js";

/** The gateway actor: the `fen-gateway` micro-service (`mail.submit`, `mail.status`). */
export type Gateway = Actor;

export interface GatewayDeps {
  readonly nc: NatsConnection;
  readonly log: Logger;
  readonly clock: Clock;
  /** Instance name in events. */
  readonly node: string;
  readonly metrics: Metrics;
}

export const GATEWAY_VERSION = "0.1.0";

export function createGateway(deps: GatewayDeps, config: GatewayConfig): Gateway {
  let status: ActorStatus = { state: "created" };
  let service: Service | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const log = deps.log.child({ actor: "gateway" });

  return {
    closed,
    status: () => status,
    async start() {
      const js = jetstream(deps.nc);
      const bodies = await new Objm(js).open(Names.bodiesBucket);
      const state = await openMailStateStore({ nc: deps.nc, js, clock: deps.clock, node: deps.node, shortReads: true });
      // The gateway reads streams only through this: single requests time out early enough for storeRead to ask
      // again (batched Direct Gets wait nats.js's own 5 s).
      const jsm = await jetstreamManager(deps.nc, { timeout: STORE_READ_ATTEMPT_MS });
      const submit = createSubmitHandler({ js, jsm, bodies, state, clock: deps.clock, log, metrics: deps.metrics }, config);
      const statusOf = createStatusHandler({ jsm, state, maxPayload: () => deps.nc.info?.max_payload });
      service = await new Svcm(deps.nc).add({
        name: Names.gatewayService, version: GATEWAY_VERSION, description: "FastEmailNet submission and status",
      });
      serveEndpoint(service, { name: "submit", subject: ServiceSubjects.submit }, async (d) => Codecs.submitReply.encode(await submit(d)), log);
      serveEndpoint(service, { name: "status", subject: ServiceSubjects.status }, async (d) => Codecs.statusReply.encode(await statusOf(d)), log);
      const svc = service;
      svc.stopped.then(() => requestsSettled(svc)).then(
        () => { status = { state: "closed" }; resolveClosed(); },
        (error: unknown) => { status = { state: "closed", error }; resolveClosed(); },
      );
      status = { state: "running" };
      log.info("gateway running");
    },
    async drain() {
      status = { state: "draining" };
      if (service) await service.stop();
      else resolveClosed();
    },
  };
}
