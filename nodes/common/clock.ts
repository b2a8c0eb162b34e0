/** Time source, injected so retry and expiry logic is deterministic in tests. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** Random source in [0, 1), injected for jitter. */
export type Random = () => number;

/** The real clock. Only composition roots (main.ts) use it. */
export const systemClock: Clock = { now: () => Date.now() };

/** The real random source. Only composition roots (main.ts) use it. */
export const systemRandom: Random = () => Math.random();
