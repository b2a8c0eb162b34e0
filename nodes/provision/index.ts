/** Idempotent provisioning of streams, consumers and buckets. */
export { placed, provision } from "./provision.js";
export type { PlacementWait, ProvisionMode, ProvisionStep } from "./provision.js";
