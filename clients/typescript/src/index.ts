// @stepaudio/client: a typed client of the stepaudio.cpp HTTP API (docs/API.md).
export { StepAudioClient } from "./client.ts";
export type { ClientOptions, RequestOptions, TranscribeAnswer, TranscriptionOptions, WaitOptions } from "./client.ts";
export { errorFromResponse, parseRetryAfter, StepAudioError } from "./errors.ts";
export type { ClientErrorCode } from "./errors.ts";
export { parseSse } from "./sse.ts";
export type { SseMessage } from "./sse.ts";
export { verifyWebhook, webhookSecretFromApiKey } from "./webhook.ts";
export type { WebhookVerification } from "./webhook.ts";
export type * from "./types.ts";
export type { components, operations, paths } from "./openapi.ts";
