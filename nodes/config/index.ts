/** Node configuration: one schema per role, validated and frozen at start-up. */
export { BODY_REAP_AGE_MIN_MS, CommonKeys, GatewayKeys, ProcessingKeys, LedgerKeys, ConfigTables, CrossKeyRules } from "./schema.js";
export type { CrossKeyRule, KeySpec } from "./schema.js";
export { loadConfig } from "./load.js";
export type { ConfigOf } from "./load.js";
import type { ConfigOf } from "./load.js";
import type { CommonKeys, GatewayKeys, LedgerKeys, ProcessingKeys } from "./schema.js";
export type CommonConfig = ConfigOf<typeof CommonKeys>;
export type GatewayConfig = ConfigOf<typeof GatewayKeys>;
export type ProcessingConfig = ConfigOf<typeof ProcessingKeys>;
export type LedgerConfig = ConfigOf<typeof LedgerKeys>;
