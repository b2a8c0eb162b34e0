import { NoRespondersError, RequestError, TimeoutError, headers as natsHeaders } from "@nats-io/nats-core";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Service, ServiceMsg } from "@nats-io/services";
import { Codecs, FenError, Headers, isErrorCode, servicePingSubject, toFenError } from "../../protocol/index.js";
import type { Codec } from "../../protocol/index.js";
import type { Logger } from "./logger.js";
import { orItsCause } from "./js-errors.js";

/** Requests being handled, per service (see `requestsSettled`). */
const inFlight = new WeakMap<Service, Set<Promise<unknown>>>();

/**
 * Resolves once every request the service's endpoints have taken is
 * answered. `service.stop()` only stops taking new ones: a node that drains
 * waits for this too, so it does not report itself stopped (and close its
 * connection) under a submission that is still being stored.
 */
export async function requestsSettled(service: Service): Promise<void> {
  const running = inFlight.get(service);
  while (running && running.size > 0) await Promise.allSettled([...running]);
}

/**
 * Serves one endpoint of a micro-service: every failure becomes an error
 * reply with a stable code in the body and in the headers (the `$SRV`
 * convention plus `Fen-Error-Code`), so clients classify by code.
 */
export function serveEndpoint(
  service: Service,
  spec: { name: string; subject: string; queue?: string },
  handler: (data: Uint8Array, msg: ServiceMsg) => Promise<Uint8Array>,
  log: Logger,
): void {
  service.addEndpoint(spec.name, {
    subject: spec.subject,
    ...(spec.queue === undefined ? {} : { queue: spec.queue }),
    handler: (err, msg) => {
      if (err) {
        log.error({ err, endpoint: spec.name }, "endpoint stopped");
        return;
      }
      const handled = handler(msg.data, msg).then(
        (reply) => msg.respond(reply),
        (e: unknown) => {
          const fe = toFenError(e);
          if (fe.code === "INTERNAL") log.error({ err: e, endpoint: spec.name }, "request failed");
          else log.debug({ code: fe.code, endpoint: spec.name }, "request rejected");
          const h = natsHeaders();
          h.set(Headers.ErrorCode, fe.code);
          const body = Codecs.errorReply.encode({ kind: "error", v: 1, code: fe.code, message: fe.message, fields: [...fe.fields] });
          msg.respondError(fe.transient ? 503 : 400, headerText(`${fe.code}: ${fe.message}`), body, { headers: h });
        },
      ).catch((e: unknown) => {
        // A reply that cannot be sent (the connection closed, a payload over max_payload) must not take the node down
        // with an unhandled rejection: the requester times out and retries.
        log.error({ err: e, endpoint: spec.name }, "could not send the reply");
      });
      const running = inFlight.get(service) ?? new Set<Promise<unknown>>();
      inFlight.set(service, running);
      running.add(handled);
      void handled.finally(() => running.delete(handled));
    },
  });
}

/**
 * An error message as a header value: NATS refuses CR or LF in a header
 * (and throws), and messages can quote what a caller sent (an unknown key
 * "x\ny" of a request), so control characters become spaces.
 */
export function headerText(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f]+/g, " ").slice(0, 1000);
}

/**
 * Client side of a request: encodes with the request codec, decodes an
 * error reply into a FenError (by its code) and anything else with the
 * reply codec.
 */
export async function callService<Req, Rep>(
  nc: NatsConnection, subject: string, reqCodec: Codec<Req>, req: Req, repCodec: Codec<Rep>, timeoutMs = 10_000,
): Promise<Rep> {
  const data = reqCodec.encode(req);
  // The client refuses a message over the servers' max_payload before sending it ("'payload' max_payload size
  // exceeded", exit 1 in the CLI): no service's own size check ever sees such a request.
  const maxPayload = nc.info?.max_payload;
  if (maxPayload !== undefined && data.length > maxPayload) {
    throw new FenError("MESSAGE_TOO_LARGE", `the ${subject} request is ${data.length} bytes, more than the NATS servers take in one message (max_payload ${maxPayload}); nothing was sent`, {
      fields: [{ field: "", code: "MESSAGE_TOO_LARGE", message: `${data.length} > ${maxPayload} bytes` }],
    });
  }
  const msg = await nc.request(subject, data, { timeout: timeoutMs }).catch((err: unknown) => {
    // Named by code: a bare "timeout" told a publisher its mail failed when it may have been stored.
    if (err instanceof NoRespondersError || (err instanceof RequestError && err.isNoResponders())) {
      throw new FenError("NO_RESPONDERS", `nothing serves ${subject} right now (no node running, or none started yet); nothing was done`, { cause: err });
    }
    if (orItsCause(err, (e) => e instanceof TimeoutError)) {
      throw new FenError("NO_REPLY", `no reply from ${subject} within ${timeoutMs} ms: it may or may not have been done; repeat the request (a submission with the same idempotency key is answered as a duplicate if it was stored)`, { cause: err });
    }
    throw err;
  });
  const code = msg.headers?.get(Headers.ErrorCode);
  if (code) {
    let reply;
    try {
      reply = Codecs.errorReply.decode(msg.data);
    } catch {
      throw new FenError(isErrorCode(code) ? code : "INTERNAL", msg.headers?.get(Headers.ServiceError) ?? "error");
    }
    throw new FenError(isErrorCode(reply.code) ? reply.code : "INTERNAL", reply.message, {
      fields: reply.fields.map((f) => ({ field: f.field, code: isErrorCode(f.code) ? f.code : "INTERNAL", message: f.message })),
    });
  }
  // A reply that does not decode (a newer service's, or a fault) is no fault of the request: the codec's
  // BAD_REQUEST would say it was refused, and the request may have been carried out.
  try {
    return repCodec.decode(msg.data);
  } catch (err) {
    throw new FenError("INTERNAL", `the reply from ${subject} does not decode (${String((err as Error | undefined)?.message ?? err).slice(0, 300)}); the request may have been carried out`, { cause: err });
  }
}

/**
 * Resolves true once the micro-service `service` answers a `$SRV` PING, or
 * false after `attempts` pings went unanswered (each waits 500 ms, then
 * `everyMs` before the next). For a launcher waiting until its nodes serve.
 */
export async function waitForService(nc: NatsConnection, service: string, opts: { attempts: number; everyMs: number }): Promise<boolean> {
  for (let i = 0; i < opts.attempts; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, opts.everyMs));
    if (await nc.request(servicePingSubject(service), undefined, { timeout: 500 }).then(() => true, () => false)) return true;
  }
  return false;
}
