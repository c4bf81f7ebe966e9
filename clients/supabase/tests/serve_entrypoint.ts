// TEST ONLY: runs a function's index.ts (the file given as argument) as Supabase would, and exits
// when its stdin closes, so a test process that dies never leaves a function server behind.
(async () => {
  for await (const _ of Deno.stdin.readable);
  Deno.exit(0);
})();
await import(new URL(Deno.args[0]!, `file://${Deno.cwd()}/`).href);
