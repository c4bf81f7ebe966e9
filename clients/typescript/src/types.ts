// Names for the shapes of docs/openapi.json. Every type here is derived from the generated
// openapi.ts (npm run generate), so a change of the contract that breaks a caller breaks the build.
import type { components, operations } from "./openapi.ts";

type Schemas = components["schemas"];

export type Result = Schemas["Result"];
export type Job = Schemas["Job"];
export type JobCreated = Schemas["JobCreated"];
export type JobList = Schemas["JobList"];
export type JobStatus = Job["status"];
export type JobOptions = Schemas["JobOptions"];
export type JobError = Schemas["JobError"];
export type Task = JobOptions["task"];
export type Models = Schemas["Models"];
export type Ready = Schemas["Ready"];
export type Health = Schemas["Health"];
export type ErrorBody = Schemas["Error"];
export type WebhookEvent = Schemas["WebhookEvent"];
export type OpenAITranscription = Schemas["OpenAITranscription"];
export type OpenAIVerboseTranscription = Schemas["OpenAIVerboseTranscription"];

/** The options of a submission (POST /transcribe-and-summarize, POST /v1/jobs). */
export type SubmitOptions = Partial<
  Pick<Schemas["SubmitMultipart"], "task" | "target_length" | "language" | "cache" | "webhook_url">
>;

type TranscriptionForm = operations["createTranscription"]["requestBody"]["content"]["multipart/form-data"];
export type ResponseFormat = NonNullable<TranscriptionForm["response_format"]>;

/** One event of GET /v1/jobs/{id}/events: `id` is its sequence number in the job. */
export type JobEvent =
  | { id: number; event: "queued"; data: Schemas["EventQueued"] }
  | { id: number; event: "running"; data: Schemas["EventRunning"] }
  | { id: number; event: "progress"; data: Schemas["EventProgress"] }
  | { id: number; event: "partial"; data: Schemas["EventPartial"] }
  | { id: number; event: "result"; data: Result }
  | { id: number; event: "error" | "canceled"; data: Schemas["EventEnded"] };

/** One event of POST /v1/audio/transcriptions with stream=true. */
export type TranscriptStreamEvent =
  | Schemas["TranscriptTextDelta"]
  | Schemas["TranscriptTextDone"]
  | Schemas["TranscriptError"];

/** How a job ended, as waitForJob reports it. */
export type JobOutcome =
  | { id: string; status: "succeeded"; result: Result }
  | { id: string; status: "failed" | "canceled"; error: JobError };

/** The recording of a submission: bytes to upload, or a URL the server fetches. */
export type AudioInput =
  | { file: Blob; filename?: string }
  | { url: string };
