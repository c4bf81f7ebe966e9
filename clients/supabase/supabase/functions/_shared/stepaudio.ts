// Our API's typed client (clients/typescript, the npm package @stepaudio/client), imported from its
// source so the function and the package cannot drift apart. `supabase functions deploy` bundles
// files outside supabase/ with the API-based bundler (CLI 2.x; `--use-api` on older versions).
export * from "../../../../typescript/src/index.ts";
