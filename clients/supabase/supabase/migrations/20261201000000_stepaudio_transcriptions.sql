-- stepaudio: results of the transcription functions, their webhook deliveries, and the private
-- Storage bucket the app uploads recordings to.
--
-- Who reads and writes what:
--   * the app (role authenticated) reads its own rows of public.transcriptions (row-level security
--     on auth.uid()), and uploads/reads/deletes objects under recordings/<its user id>/;
--   * the Edge Functions write through SUPABASE_DB_URL (the table owner: row-level security does
--     not apply to it); users never write results;
--   * anon reads nothing.

create table public.transcriptions (
  job_id       text primary key check (job_id ~ '^job_[0-9a-f]{24}$'),
  user_id      uuid not null references auth.users (id) on delete cascade,
  status       text not null check (status in ('queued', 'running', 'succeeded', 'failed', 'canceled')),
  task         text not null check (task in ('transcribe', 'summarize', 'analyze', 'transcribe_and_summarize')),
  storage_path text,            -- "<bucket>/<path>" of the recording, when it came from Storage
  result       jsonb,           -- the seed's result (docs/result.schema.json) once succeeded
  error        jsonb,           -- {"code", "message"} once failed or canceled
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now()
);
comment on table public.transcriptions is
  'stepaudio results, one row per job; users read their own (RLS), the Edge Functions write.';
create index transcriptions_user_created on public.transcriptions (user_id, created_at desc);

alter table public.transcriptions enable row level security;
-- Supabase grants everything on new public tables to anon and authenticated by default: take it
-- back and grant reading only, so a policy mistake cannot turn into writes.
revoke all on table public.transcriptions from anon, authenticated;
grant select on table public.transcriptions to authenticated;
create policy "users read their own transcriptions"
  on public.transcriptions for select to authenticated
  using ((select auth.uid()) = user_id);

-- Webhook deliveries already stored. (job_id, delivery_id) makes a retried delivery a no-op; the
-- unique signature refuses a captured request sent again (the StepAudio-Delivery header is not
-- signed, so the signature is what identifies one signed request).
create table public.stepaudio_webhook_deliveries (
  job_id      text not null,
  delivery_id text not null,
  signature   text not null unique,
  received_at timestamptz not null default now(),
  primary key (job_id, delivery_id)
);
alter table public.stepaudio_webhook_deliveries enable row level security; -- no policy: nobody but the owner
revoke all on table public.stepaudio_webhook_deliveries from anon, authenticated;

-- The app subscribes to its rows (Realtime applies the same row-level security).
do $$
begin
  if exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    alter publication supabase_realtime add table public.transcriptions;
  end if;
end $$;

-- Recordings: a private bucket; each user owns the folder named after their id
-- (recordings/<user id>/<file>), which is also what the transcribe function accepts.
insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types)
values ('recordings', 'recordings', false, 104857600, array['audio/*'])
on conflict (id) do nothing;

create policy "users upload recordings into their own folder"
  on storage.objects for insert to authenticated
  with check (bucket_id = 'recordings' and (storage.foldername(name))[1] = (select auth.uid()::text));
create policy "users read their own recordings"
  on storage.objects for select to authenticated
  using (bucket_id = 'recordings' and (storage.foldername(name))[1] = (select auth.uid()::text));
create policy "users replace their own recordings"
  on storage.objects for update to authenticated
  using (bucket_id = 'recordings' and (storage.foldername(name))[1] = (select auth.uid()::text));
create policy "users delete their own recordings"
  on storage.objects for delete to authenticated
  using (bucket_id = 'recordings' and (storage.foldername(name))[1] = (select auth.uid()::text));
