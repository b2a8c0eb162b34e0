/** Idempotent provisioning of streams, consumers and buckets. */
export { provision } from "./provision.js";
export type { PlacementWait, ProvisionStep } from "./provision.js";
