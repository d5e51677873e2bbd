// Timestep respacing: the step strings, the T-1 guarantee, the respaced betas (alpha_bar
// kept at the kept steps) and the map back to the original timesteps.
#include <cmath>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/diffusion/respace.h"

namespace ddpm::diffusion {
namespace {

void expect_sorted_unique_in_range(const Timesteps& k, std::int64_t T) {
  ASSERT_FALSE(k.empty());
  EXPECT_GE(k.front(), 0);
  EXPECT_LT(k.back(), T);
  for (std::size_t i = 1; i < k.size(); ++i) EXPECT_LT(k[i - 1], k[i]);
}

TEST(Respace, SingleSectionSpreadsEvenlyAndEndsAtTMinus1) {
  Timesteps k = space_timesteps(1000, "250");
  ASSERT_EQ(k.size(), 250u);
  expect_sorted_unique_in_range(k, 1000);
  EXPECT_EQ(k.front(), 0);
  EXPECT_EQ(k.back(), 999);
  for (std::size_t i = 1; i < k.size(); ++i) {
    EXPECT_GE(k[i] - k[i - 1], 4);
    EXPECT_LE(k[i] - k[i - 1], 5);  // stride 999/249 = 4.01
  }
  Timesteps all = space_timesteps(1000, "1000");
  ASSERT_EQ(all.size(), 1000u);
  for (std::int64_t i = 0; i < 1000; ++i) EXPECT_EQ(all[static_cast<std::size_t>(i)], i);
}

TEST(Respace, SectionsKeepTheirFirstAndLastSteps) {
  Timesteps k = space_timesteps(1000, "10,15,20");
  ASSERT_EQ(k.size(), 45u);
  expect_sorted_unique_in_range(k, 1000);
  // Sections of 334, 333, 333 steps: [0, 333], [334, 666], [667, 999].
  EXPECT_EQ(k[0], 0);
  EXPECT_EQ(k[9], 333);
  EXPECT_EQ(k[10], 334);
  EXPECT_EQ(k[24], 666);
  EXPECT_EQ(k[25], 667);
  EXPECT_EQ(k[44], 999);
  // Interior of the first section: round(i * 333/9) = 37 i.
  EXPECT_EQ(k[4], 148);
}

TEST(Respace, DdimUsesTheExactStrideAndEndsAtTMinus1) {
  Timesteps k = space_timesteps(1000, "ddim50");
  ASSERT_EQ(k.size(), 50u);
  EXPECT_EQ(k.back(), 999);
  EXPECT_EQ(k.front(), 19);
  for (std::size_t i = 1; i < k.size(); ++i) EXPECT_EQ(k[i] - k[i - 1], 20);
  EXPECT_EQ(space_timesteps(1000, "ddim1000").front(), 0);
  EXPECT_EQ(space_timesteps(1000, "ddim1"), (Timesteps{999}));
}

TEST(Respace, EveryFormStartsSamplingAtTMinus1) {
  // The last kept timestep is the first sampling step; "leading" spacing would miss T-1.
  const std::pair<std::int64_t, const char*> cases[] = {
      {1000, "1"},   {1000, "2"},      {1000, "5,1"},   {1000, "3,3,1"},   {1000, "ddim10"}, {1000, "ddim250"},
      {4000, "100"}, {4000, "ddim100"}, {1000, "1,1,1"}, {10, "4,3,3"},     {7, "7"},         {1, "1"},
      {1000, "27"},  {999, "10,10,10"}, {200, "ddim8"}};
  for (auto [T, s] : cases) {
    SCOPED_TRACE(s);
    Timesteps k = space_timesteps(T, s);
    expect_sorted_unique_in_range(k, T);
    EXPECT_EQ(k.back(), T - 1) << "T = " << T;
  }
}

TEST(Respace, ClearErrors) {
  auto expect_error = [](std::int64_t T, const std::string& s, const std::string& fragment) {
    try {
      space_timesteps(T, s);
      ADD_FAILURE() << "'" << s << "' on " << T << " did not throw";
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error(1000, "ddim7", "exact integer stride");
  expect_error(1000, "ddim0", "step count of 0");
  expect_error(1000, "ddim", "is not a step count");
  expect_error(1000, "ddimx", "is not a step count");
  expect_error(1000, "ddim2000", "only 1000");
  expect_error(1000, "abc", "'abc'");
  expect_error(1000, "", "lists no step counts");
  expect_error(1000, "10,,5", "is not a step count");
  expect_error(1000, "10,", "lists no step counts");
  expect_error(1000, "-5", "is not a step count");
  expect_error(1000, "0", "step count of 0");
  expect_error(1000, "1001", "fewer than the 1001");
  expect_error(30, "10,15,20", "section 1");
  expect_error(0, "1", "at least 1");
}

TEST(Respace, RespacedBetasKeepAlphaBarAtTheKeptSteps) {
  for (auto schedule : {NoiseSchedule::linear, NoiseSchedule::cosine}) {
    std::vector<double> base = betas_for(schedule, 1000);
    DiffusionSchedule full(base);
    for (const char* str : {"250", "10,15,20", "ddim50", "1"}) {
      SCOPED_TRACE(str);
      RespacedSchedule r = respace(base, str);
      ASSERT_EQ(r.timestep_map, space_timesteps(1000, str));
      ASSERT_EQ(r.schedule.num_timesteps(), static_cast<std::int64_t>(r.timestep_map.size()));
      double prod = 1.0;
      for (std::size_t i = 0; i < r.timestep_map.size(); ++i) {
        prod *= 1.0 - r.schedule.betas[i];
        double abar = full.alphas_cumprod[static_cast<std::size_t>(r.timestep_map[i])];
        // 1 - (1 - abar) loses about 1e-16 absolute: the cosine tail has abar ~ 1e-11.
        EXPECT_NEAR(prod, abar, 1e-15 + 1e-10 * abar) << "kept step " << i;
        EXPECT_NEAR(r.schedule.alphas_cumprod[i], abar, 1e-15 + 1e-10 * abar);
      }
    }
  }
}

TEST(Respace, KeepingEveryStepChangesNothing) {
  std::vector<double> base = linear_betas(100);
  RespacedSchedule r = respace(base, "100");
  for (std::size_t i = 0; i < base.size(); ++i) EXPECT_NEAR(r.schedule.betas[i], base[i], 1e-15);
}

TEST(Respace, TheNetworkSeesOriginalTimesteps) {
  RespacedSchedule r = respace(linear_betas(1000), "ddim50");
  EXPECT_EQ(r.map_timesteps({0, 1, 49}), (Timesteps{19, 39, 999}));
  EXPECT_THROW(r.map_timesteps({50}), ValueError);
  EXPECT_THROW(respace(cosine_betas(10), Timesteps{3, 3}), ValueError);
  EXPECT_THROW(respace(cosine_betas(10), Timesteps{10}), ValueError);
  EXPECT_THROW(respace(cosine_betas(10), Timesteps{}), ValueError);
}

}  // namespace
}  // namespace ddpm::diffusion
