// engine/math_mode.h: the defaults (TF32 off, benchmarked convolution algorithms,
// deterministic only), the setters, parsing, and MathModeScope restoring all three. The
// settings' effect on the device is tested in tests/gpu (test_conv_gpu, test_linalg_gpu).
#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/math_mode.h"

namespace ddpm {
namespace {

TEST(MathMode, DefaultsAreFp32BenchmarkAndDeterministic) {
  EXPECT_FALSE(allow_tf32());
  EXPECT_EQ(conv_algo_search(), ConvAlgoSearch::benchmark);
  EXPECT_FALSE(allow_nondeterministic_conv());
}

TEST(MathMode, ScopeRestoresEverySetting) {
  {
    MathModeScope restore;
    set_allow_tf32(true);
    set_conv_algo_search(ConvAlgoSearch::heuristic);
    set_allow_nondeterministic_conv(true);
    EXPECT_TRUE(allow_tf32());
    EXPECT_EQ(conv_algo_search(), ConvAlgoSearch::heuristic);
    EXPECT_TRUE(allow_nondeterministic_conv());
  }
  EXPECT_FALSE(allow_tf32());
  EXPECT_EQ(conv_algo_search(), ConvAlgoSearch::benchmark);
  EXPECT_FALSE(allow_nondeterministic_conv());
}

TEST(MathMode, ParsesAlgorithmSearchNames) {
  EXPECT_EQ(parse_conv_algo_search("heuristic"), ConvAlgoSearch::heuristic);
  EXPECT_EQ(parse_conv_algo_search("benchmark"), ConvAlgoSearch::benchmark);
  EXPECT_STREQ(conv_algo_search_name(ConvAlgoSearch::heuristic), "heuristic");
  EXPECT_STREQ(conv_algo_search_name(ConvAlgoSearch::benchmark), "benchmark");
  EXPECT_THROW(parse_conv_algo_search("fastest"), ValueError);
}

}  // namespace
}  // namespace ddpm
