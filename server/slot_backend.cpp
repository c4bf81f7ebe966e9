// SlotBackend (slot_backend.h): the FIFO, the slot threads and the stop order of the backends.
#include "slot_backend.h"

#include <vector>

namespace stepaudio::server {

SlotBackend::~SlotBackend() {
  stop();
}

bool SlotBackend::submit(std::shared_ptr<InferenceTask> task, bool force) {
  return enqueue(Work{std::move(task), nullptr}, force);
}

bool SlotBackend::submit_chat(std::shared_ptr<ChatTask> task) {
  return enqueue(Work{nullptr, std::move(task)}, false);
}

size_t SlotBackend::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

size_t SlotBackend::running() const {
  std::lock_guard lock(mu_);
  return running_.size();
}

void SlotBackend::stop() {
  std::deque<Work> left;
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !starter_.joinable()) return;
    stopping_ = true;
    for (const auto& w : running_) w.cancel() = true;
    left.swap(queue_);
  }
  cv_.notify_all();
  if (starter_.joinable()) starter_.join();  // it joins the slots
  for (auto& w : left)
    if (w.chat && w.chat->on_error) w.chat->on_error(Error(Errc::canceled, "the server stopped"));
}

void SlotBackend::start(std::function<void()> starter) {
  starter_ = std::thread(std::move(starter));
}

bool SlotBackend::wait_for_stop(int ms) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping_; });
}

void SlotBackend::serve_slots() {
  std::vector<std::thread> slots;
  for (size_t i = 0; i < std::max<size_t>(1, parallel_); ++i)
    slots.emplace_back([this] {
      for (;;) {
        Work w;
        {
          std::unique_lock lock(mu_);
          cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
          if (stopping_) return;
          w = std::move(queue_.front());
          queue_.pop_front();
          running_.insert(w);
        }
        if (w.task) run_task(*w.task);
        if (w.chat) run_chat(*w.chat);
        std::lock_guard lock(mu_);
        running_.erase(w);
      }
    });
  for (auto& t : slots) t.join();
}

bool SlotBackend::enqueue(Work w, bool force) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    if (!force && queue_.size() >= max_queued_) return false;
    queue_.push_back(std::move(w));
  }
  cv_.notify_one();
  return true;
}

void SlotBackend::run_task(InferenceTask& t) {
  try {
    if (t.cancel) throw Error(Errc::canceled, "request canceled");
    if (t.on_start) t.on_start();
    // Decoded here, on the slot: a waiting task holds compressed bytes, not PCM.
    audio::DecodedAudio pcm = audio::decode_memory(
        reinterpret_cast<const uint8_t*>(t.audio_bytes.data()), t.audio_bytes.size(), t.decode);
    std::string().swap(t.audio_bytes);
    Understanding u = understand_task(std::move(pcm), t);
    if (t.on_success) t.on_success(std::move(u));
  } catch (const Error& e) {
    if (t.on_error) t.on_error(e);
  } catch (const std::exception& e) {
    if (t.on_error) t.on_error(Error(Errc::internal, e.what()));
  }
}

void SlotBackend::run_chat(ChatTask& t) {
  try {
    if (t.cancel) throw Error(Errc::canceled, "request canceled");
    ChatResult r = complete_chat(t);
    if (t.on_success) t.on_success(std::move(r));
  } catch (const Error& e) {
    if (t.on_error) t.on_error(e);
  } catch (const std::exception& e) {
    if (t.on_error) t.on_error(Error(Errc::internal, e.what()));
  }
}

}  // namespace stepaudio::server
