// model::Session::forward_mixed: one decoder pass over the rows of several sessions (a prefill
// piece, decode steps, a scored token tree) gives every session exactly what its own passes give:
// the same logits and the same cache (checked by continuing each session afterwards), bit for bit,
// in every mode where rows_independent_of_batch holds (f32, bf16, and q8/q4 with int8 activations
// on AVX-512); elsewhere (the bf16-activation GEMM) the predicate must say no. Also: checks run
// before anything changes.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "model/model_data.h"
#include "model/session.h"
#include "ops/cpu.h"
#include "stepaudio/error.h"

using namespace stepaudio;

namespace {
struct Rows {
  std::vector<float> x;
  size_t n = 0;
};
Rows embed(const model::Session& s, std::initializer_list<int32_t> ids, size_t H) {
  Rows r{std::vector<float>(ids.size() * H), ids.size()};
  size_t i = 0;
  for (int32_t id : ids) s.embed(id, r.x.data() + (i++) * H);
  return r;
}
bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
}  // namespace

class MixedPass : public ::testing::TestWithParam<Quant> {};

TEST_P(MixedPass, EqualsEachSessionsOwnPasses) {
  auto m = make_synthetic_model("tiny", 31, GetParam());
  if (!model::rows_independent_of_batch(*m)) GTEST_SKIP() << "rows depend on M in this mode";
  const size_t H = m->cfg.text.hidden, V = m->cfg.text.vocab;
  ops::ThreadPool pool(2);
  // Three sessions with different prefixes: A gets a 13-row prefill piece, B a decode row, C a
  // token tree (two branches sharing a first token), D a second decode row.
  auto make = [&](std::initializer_list<int32_t> prefix) {
    model::Session s(*m, pool, 64);
    Rows p = embed(s, prefix, H);
    std::vector<float> lg(V);
    s.forward(p.x.data(), p.n, lg.data());
    return s;
  };
  model::Session a1 = make({1, 2, 3}), b1 = make({9, 8, 7, 6, 5}), c1 = make({4, 4, 2}),
                 d1 = make({11});
  model::Session a2 = a1.fork(64), b2 = b1.fork(64), c2 = c1.fork(64), d2 = d1.fork(64);
  const Rows ra = embed(a1, {20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}, H);
  const Rows rb = embed(b1, {40}, H), rd = embed(d1, {41}, H);
  const Rows rc = embed(c1, {50, 51, 52, 53}, H);
  const int32_t parent[] = {-1, 0, 0, -1};
  // Alone.
  std::vector<float> la1(V), lb1(V), ld1(V), lc1(4 * V);
  a1.forward(ra.x.data(), ra.n, la1.data());
  b1.forward(rb.x.data(), 1, lb1.data());
  c1.forward_tree(rc.x.data(), rc.n, parent, lc1.data());
  d1.forward(rd.x.data(), 1, ld1.data());
  // Together.
  std::vector<float> la2(V), lb2(V), ld2(V), lc2(4 * V);
  const model::Session::Rows parts[] = {{&b2, rb.x.data(), 1, nullptr, lb2.data()},
                                        {&a2, ra.x.data(), ra.n, nullptr, la2.data()},
                                        {&c2, rc.x.data(), rc.n, parent, lc2.data()},
                                        {&d2, rd.x.data(), 1, nullptr, ld2.data()}};
  model::Session::forward_mixed(parts);
  EXPECT_TRUE(same(la1, la2));
  EXPECT_TRUE(same(lb1, lb2));
  EXPECT_TRUE(same(lc1, lc2));
  EXPECT_TRUE(same(ld1, ld2));
  EXPECT_EQ(a2.pos(), a1.pos());
  EXPECT_EQ(b2.pos(), 6u);
  EXPECT_EQ(c2.pos(), 3u);  // a tree does not advance its session
  // The caches too: one more step on each gives the same logits (C continues after its prefix).
  for (auto [s1, s2] : {std::pair{&a1, &a2}, {&b1, &b2}, {&c1, &c2}, {&d1, &d2}}) {
    const Rows r = embed(*s1, {60}, H);
    std::vector<float> l1(V), l2(V);
    s1->forward(r.x.data(), 1, l1.data());
    s2->forward(r.x.data(), 1, l2.data());
    EXPECT_TRUE(same(l1, l2)) << "after the pass, session at " << s1->pos();
  }
  // Parts without logits (a middle prefill piece) compute nothing extra and still advance.
  model::Session e1 = make({3}), e2 = make({3});
  const Rows re = embed(e1, {5, 6, 7}, H);
  std::vector<float> lg(V);
  const model::Session::Rows quiet[] = {{&e2, re.x.data(), re.n, nullptr, nullptr}};
  model::Session::forward_mixed(quiet);
  e1.forward(re.x.data(), re.n, lg.data());
  EXPECT_EQ(e2.pos(), e1.pos());
  const Rows next = embed(e1, {8}, H);
  std::vector<float> l1(V), l2(V);
  e1.forward(next.x.data(), 1, l1.data());
  e2.forward(next.x.data(), 1, l2.data());
  EXPECT_TRUE(same(l1, l2));
}

INSTANTIATE_TEST_SUITE_P(Quants, MixedPass,
                         ::testing::Values(Quant::f32, Quant::bf16, Quant::q8, Quant::q4),
                         [](const auto& info) { return std::string(quant_name(info.param)); });

TEST(MixedPassApi, PredicateFollowsTheKernels) {
  EXPECT_TRUE(model::rows_independent_of_batch(*make_synthetic_model("tiny", 1, Quant::f32)));
  EXPECT_TRUE(model::rows_independent_of_batch(*make_synthetic_model("tiny", 1, Quant::bf16)));
  // q4 with the bf16-activation prefill GEMM: rows past kGemvMaxRows round differently.
  EXPECT_FALSE(model::rows_independent_of_batch(
      *make_synthetic_model("tiny", 1, Quant::q4, true, /*int8_prefill=*/false)));
  const bool vnni = ops::cpu_isa() == ops::Isa::avx512;
  EXPECT_EQ(model::rows_independent_of_batch(*make_synthetic_model("tiny", 1, Quant::q4)), vnni);
}

TEST(MixedPassApi, ChecksBeforeChanging) {
  auto m = make_synthetic_model("tiny", 2, Quant::f32);
  const size_t H = m->cfg.text.hidden, V = m->cfg.text.vocab;
  ops::ThreadPool pool(1);
  model::Session a(*m, pool, 8), b(*m, pool, 4);
  const Rows r1 = embed(a, {5}, H), r5 = embed(a, {1, 2, 3, 4, 5}, H);
  std::vector<float> la(V), lb(V);
  // b cannot hold 5 rows: nothing runs, a is not advanced either.
  const model::Session::Rows over[] = {{&a, r1.x.data(), 1, nullptr, la.data()},
                                       {&b, r5.x.data(), 5, nullptr, lb.data()}};
  EXPECT_THROW(model::Session::forward_mixed(over), Error);
  EXPECT_EQ(a.pos(), 0u);
  const model::Session::Rows twice[] = {{&a, r1.x.data(), 1, nullptr, la.data()},
                                        {&a, r1.x.data(), 1, nullptr, la.data()}};
  EXPECT_THROW(model::Session::forward_mixed(twice), Error);
  const int32_t bad_parent[] = {-1, 2, 0};
  const model::Session::Rows tree[] = {{&a, r5.x.data(), 3, bad_parent, nullptr}};
  EXPECT_THROW(model::Session::forward_mixed(tree), Error);
  auto other = make_synthetic_model("tiny", 3, Quant::f32);
  model::Session c(*other, pool, 8);
  const model::Session::Rows models[] = {{&a, r1.x.data(), 1, nullptr, la.data()},
                                         {&c, r1.x.data(), 1, nullptr, lb.data()}};
  EXPECT_THROW(model::Session::forward_mixed(models), Error);
  EXPECT_EQ(a.pos(), 0u);
  EXPECT_EQ(c.pos(), 0u);
}
