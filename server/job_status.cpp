// Job status names and the terminal-status precondition (job_store.h).
#include <stdexcept>

#include "job_store.h"

namespace stepaudio::server {

const char* job_status_name(JobStatus s) {
  switch (s) {
    case JobStatus::queued:
      return "queued";
    case JobStatus::running:
      return "running";
    case JobStatus::succeeded:
      return "succeeded";
    case JobStatus::failed:
      return "failed";
    case JobStatus::canceled:
      return "canceled";
  }
  return "failed";
}

std::optional<JobStatus> parse_job_status(const std::string& s) {
  for (JobStatus v : {JobStatus::queued, JobStatus::running, JobStatus::succeeded,
                      JobStatus::failed, JobStatus::canceled})
    if (s == job_status_name(v)) return v;
  return std::nullopt;
}

void require_terminal(JobStatus s) {
  if (!is_terminal(s))
    throw std::invalid_argument(std::string("finish_job: status ") + job_status_name(s) +
                                " is not terminal");
}

}  // namespace stepaudio::server
