import type { Random } from "../common/clock.js";

/** Backoff policy for transient delivery failures. */
export interface BackoffPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
}

/**
 * Delay before attempt `attempt + 1` after `attempt` failed (attempt ≥ 1):
 * exponential (`base · 2^(attempt-1)`, capped at `max`) with "equal jitter"
 * (half fixed, half random), so synchronized failures spread out but a
 * retry never comes sooner than half the nominal delay.
 */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: Random): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, Math.min(attempt - 1, 40)));
  return Math.round(exp / 2 + (exp / 2) * random());
}
