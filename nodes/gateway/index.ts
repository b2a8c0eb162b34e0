/** The gateway node: `mail.submit` and `mail.status`. */
export { createGateway, GATEWAY_VERSION } from "./gateway.js";
export type { Gateway, GatewayDeps } from "./gateway.js";
export { checkMime } from "./mime.js";
export { readHistory } from "./status.js";
export { checkRequestSize, checkServerPayload, checkStructuredSize, maxMessageBytesWithin, maxRequestBytesFor, requestBoundFor, tooLarge } from "./submit.js";
export { composeStructured, structuredRecipients, messageIdForPreview } from "./compose.js";
