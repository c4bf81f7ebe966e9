// DecodeSession's state (include/stepaudio/session.h), shared by decode_session.cpp (one session)
// and batch_decode.cpp (BatchDecoder: several sessions stepped together). Internal to src/model/.
#pragma once

#include <memory>
#include <vector>

#include "model/session.h"
#include "stepaudio/session.h"

namespace stepaudio {

struct DecodeSession::Impl {
  std::shared_ptr<const Model> model;
  std::shared_ptr<ops::ThreadPool> pool;  // shared with forks; declared before the session
  model::Session session;
  std::vector<float> logits;     // [vocab] after the last appended id, empty before
  std::vector<int32_t> history;  // every id appended (the repetition penalty's view)

  Impl(std::shared_ptr<const Model> m, std::shared_ptr<ops::ThreadPool> p, model::Session s)
      : model(std::move(m)), pool(std::move(p)), session(std::move(s)) {}
};

}  // namespace stepaudio
