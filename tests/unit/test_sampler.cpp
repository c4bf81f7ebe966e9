#include <gtest/gtest.h>

#include <cmath>

#include "model/sampler.h"
#include "stepaudio/error.h"

using stepaudio::SamplingOptions;
using stepaudio::model::Sampler;

TEST(Sampler, GreedyPicksArgmaxAndReportsRawLogprob) {
  Sampler s(SamplingOptions{});
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 1.5f};
  float lp = 0;
  EXPECT_EQ(s.sample(l, {}, &lp), 1);
  double z = 0;
  for (float v : l) z += std::exp(v);
  EXPECT_NEAR(lp, 2.0 - std::log(z), 1e-6);
}

TEST(Sampler, RepetitionPenaltyHfDefinition) {
  std::vector<float> l = {2.0f, -2.0f, 1.0f, 0.5f};
  Sampler::apply_repetition_penalty(l, {0, 1, 1}, 2.0f);  // duplicates penalize once
  EXPECT_FLOAT_EQ(l[0], 1.0f);                            // positive: divided
  EXPECT_FLOAT_EQ(l[1], -4.0f);                           // negative: multiplied
  EXPECT_FLOAT_EQ(l[2], 1.0f);
  Sampler greedy(SamplingOptions{0.0f, 0, 1.0f, 3.0f, 0});
  EXPECT_EQ(greedy.sample({2.0f, 1.0f}, {0}, nullptr), 1);  // 2/3 < 1
}

TEST(Sampler, TopKAndTopPMasses) {
  std::vector<float> l = {std::log(0.5f), std::log(0.25f), std::log(0.15f), std::log(0.1f)};
  Sampler k2(SamplingOptions{1.0f, 2, 1.0f, 1.0f, 0});
  auto p = k2.distribution(l);
  EXPECT_NEAR(p[0], 2.0 / 3, 1e-6);
  EXPECT_NEAR(p[1], 1.0 / 3, 1e-6);
  EXPECT_EQ(p[2], 0.0f);
  // top_p 0.8: 0.5 + 0.25 = 0.75 < 0.8, so the third id (0.15) is needed; the fourth is dropped.
  Sampler tp(SamplingOptions{1.0f, 0, 0.8f, 1.0f, 0});
  p = tp.distribution(l);
  EXPECT_NEAR(p[0], 0.5 / 0.9, 1e-6);
  EXPECT_NEAR(p[2], 0.15 / 0.9, 1e-6);
  EXPECT_EQ(p[3], 0.0f);
  // Temperature 2 flattens: p ~ sqrt(q).
  Sampler t2(SamplingOptions{2.0f, 0, 1.0f, 1.0f, 0});
  p = t2.distribution(l);
  EXPECT_NEAR(p[0] / p[1], std::sqrt(2.0), 1e-5);
}

TEST(Sampler, SeedReproducibleAndFollowsDistribution) {
  std::vector<float> l = {0.0f, std::log(3.0f)};  // p = 0.25, 0.75
  SamplingOptions o{1.0f, 0, 1.0f, 1.0f, 42};
  Sampler a(o), b(o);
  int ones = 0;
  for (int i = 0; i < 4000; ++i) {
    int32_t x = a.sample(l, {}, nullptr);
    EXPECT_EQ(x, b.sample(l, {}, nullptr));
    ones += x;
  }
  EXPECT_NEAR(ones / 4000.0, 0.75, 0.03);  // 4.4 sigma of a binomial(4000, 0.75)
}

TEST(Sampler, RejectsBadOptions) {
  EXPECT_THROW(Sampler(SamplingOptions{1.0f, 0, 0.0f, 1.0f, 0}), stepaudio::Error);
  EXPECT_THROW(Sampler(SamplingOptions{1.0f, -1, 1.0f, 1.0f, 0}), stepaudio::Error);
  EXPECT_THROW(Sampler(SamplingOptions{1.0f, 0, 1.0f, 0.0f, 0}), stepaudio::Error);
}
