// A request canceled while its branches generate (understand() on the synthetic tiny model): it
// ends with Error(canceled), and the scheduler serves the next request. The cancel comes from the
// progress callback at the transcript's first streamed text, so it lands while the chunk's other
// questions are still being asked (start_chunk), as a DELETE of a running job does in the server.
// The race behind session 21's fix (the threaded scheduler stepping a branch whose session an
// unwinding start_chunk had freed) is not forced here: the transcript's next token usually ends
// it first. Run under AddressSanitizer in CI, these runs would report it when it does happen.
#include <gtest/gtest.h>

#include <atomic>

#include "stepaudio/error.h"
#include "stepaudio/scheduler.h"
#include "stepaudio/tasks.h"
#include "tiny_engine.h"

using namespace stepaudio;

namespace {

audio::DecodedAudio tone_recording(double seconds) {
  audio::DecodedAudio d;
  d.sample_rate = audio::kSampleRate;
  d.source_channels = 1;
  d.samples = test::tone(seconds);
  return d;
}

// Runs `task` on a recording, canceled at the first streamed transcript text; true when it ended
// canceled (false: it finished before, e.g. a transcript with no text).
bool canceled_run(const Engine& e, Scheduler* sched, Task task, double seconds) {
  TaskOptions o;
  o.task = task;
  o.scheduler = sched;
  o.threads = 1;
  std::atomic<bool> cancel{false};
  auto progress = [&](const TaskProgress& p) {
    if (!p.text_delta.empty()) cancel = true;
  };
  try {
    understand(e, tone_recording(seconds), o, progress, &cancel);
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), Errc::canceled) << err.what();
    return true;
  }
  return false;
}

}  // namespace

TEST(TaskCancel, CanceledWhileBranchesGenerateEndsCanceledAndKeepsTheirSessions) {
  const Engine e = test::tiny_engine();
  for (const bool threaded : {false, true}) {
    Scheduler sched(SchedulerOptions{.threaded = threaded});
    size_t canceled = 0;
    for (int i = 0; i < 8; ++i)
      for (Task t : {Task::analyze, Task::transcribe_and_summarize})
        canceled += canceled_run(e, &sched, t, i % 2 ? 4.0 : 40.0);  // one chunk; two
    EXPECT_GT(canceled, 0u) << "threaded " << threaded;
    // The scheduler serves the next request as if nothing happened.
    TaskOptions o;
    o.task = Task::transcribe;
    o.scheduler = &sched;
    o.threads = 1;
    EXPECT_NO_THROW(understand(e, tone_recording(2.0), o));
  }
}
