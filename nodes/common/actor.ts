/** Life-cycle status of an actor (a discriminated union). */
export type ActorStatus =
  | { readonly state: "created" }
  | { readonly state: "running" }
  | { readonly state: "draining" }
  | { readonly state: "closed"; readonly error?: unknown };

/**
 * Every node's actor: `start()` begins work, `drain()` stops taking new
 * work and lets in-flight work finish, `closed` resolves when it is done.
 */
export interface Actor {
  start(): Promise<void>;
  drain(): Promise<void>;
  readonly closed: Promise<void>;
  status(): ActorStatus;
  /**
   * Why a running actor cannot do its work right now (e.g. the durable consumer it pulls from is gone), or
   * undefined. `/readyz` is 503 with this reason meanwhile. Optional: an actor without it is ready while running.
   */
  notReady?(): string | undefined;
}
