// Regression tests for what libFuzzer found in the readers of outside bytes (tests/fuzz,
// scripts/fuzz.sh, docs/RELIABILITY.md). Each test rebuilds the smallest form of a crashing
// input by hand from the format's description (not the fuzzer's raw bytes, which carry noise)
// and checks that the reader now refuses it with the library's own error, naming the problem.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "models/run/model_source.h"
#include "models/unet/encoder.h"
#include "models/unet/model_io.h"
#include "support/npz_fixtures.h"
#include "support/temp_dir.h"

namespace ddpm {
namespace {

// A version 1.0 .npy file with the given header dict and `data_bytes` bytes of payload
// (NEP 1: magic, version, 2-byte little-endian header length, the dict, the data).
std::vector<std::uint8_t> npy_with_header(const std::string& dict, std::size_t data_bytes) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  const std::string b = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(header.size() & 0xff) +
                        static_cast<char>(header.size() >> 8) + header + std::string(data_bytes, '\x7f');
  return std::vector<std::uint8_t>(b.begin(), b.end());
}

std::string refusal(const std::vector<std::uint8_t>& blob) {
  try {
    parse_npy(blob, "fuzzed.npy");
  } catch (const IoError& e) {
    return e.what();
  }
  return "accepted";
}

// fuzz_npz: a dimension of 30 digits went to std::stoll, whose std::out_of_range escaped
// parse_npy (and load_npz) instead of an IoError.
TEST(FuzzRegressions, NpyDimensionBeyond64BitsIsRefused) {
  const std::string msg =
      refusal(npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (999999999999999999999999999999,), }", 4));
  EXPECT_NE(msg.find("too large for 64 bits"), std::string::npos) << msg;
}

// The same parser multiplied the dimensions in int64 without a check: 2^32 x 2^32 elements
// wrapped to 0 (undefined behaviour, caught by UBSan), so an empty payload matched a shape
// of 2^64 elements and was accepted. A shape with a zero dimension stays valid (numpy
// writes such empty arrays).
TEST(FuzzRegressions, NpyShapeWhoseElementCountOverflowsIsRefused) {
  const std::string msg =
      refusal(npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 0));
  EXPECT_NE(msg.find("more elements than 64 bits can count"), std::string::npos) << msg;
  const std::string bytes_msg =
      refusal(npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }", 0));
  EXPECT_NE(bytes_msg.find("more bytes than 64 bits can count"), std::string::npos) << bytes_msg;
  const NpyArray empty =
      parse_npy(npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4294967296), }", 0), "e.npy");
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_TRUE(empty.bytes.empty());
}

// fuzz_npz: a deflated member's uncompressed size (central directory, offset 24) was
// allocated as announced, before inflating: a 200-byte archive asked for 1.5 GB. Deflate
// expands by at most 1032:1, so the reader now refuses such a header before allocating.
TEST(FuzzRegressions, NpzDeflatedMemberAnnouncingAHugeSizeIsRefusedBeforeAllocating) {
  const std::vector<std::uint8_t> labels{1, 2, 3};
  const std::string npy = npy_bytes(npy_view("arr_0", {3}, labels));
  testing::NpzBytes zip = testing::zip_archive({{"arr_0.npy", npy}}, {/*zip64_local=*/false, /*deflate=*/true});
  testing::TempDir dir;
  write_file_atomic(dir.path + "/good.npz", zip);
  ASSERT_EQ(load_npz(dir.path + "/good.npz").get("arr_0").as_int64(), (std::vector<std::int64_t>{1, 2, 3}));
  // The end-of-central-directory record is the last 22 bytes; its offset 16 holds where the
  // central directory starts, whose entry holds the uncompressed size at offset 24.
  const std::size_t eocd = zip.size() - 22;
  std::size_t cd = 0;
  for (int i = 3; i >= 0; --i) cd = (cd << 8) | static_cast<std::uint8_t>(zip[eocd + 16 + i]);
  const std::uint32_t huge = 0x5D000000;  // 1.5 GB
  for (int i = 0; i < 4; ++i) zip[cd + 24 + i] = static_cast<char>((huge >> (8 * i)) & 0xff);
  write_file_atomic(dir.path + "/bad.npz", zip);
  try {
    load_npz(dir.path + "/bad.npz");
    FAIL() << "a member announcing 1.5 GB from a few compressed bytes was accepted";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot inflate to the 1560281088 bytes"), std::string::npos) << e.what();
  }
}

// fuzz_model_config: scheduler_config.json holding a bare number (or a value of the wrong
// type) made j.value() throw nlohmann::json::type_error, which escaped open_model. It is
// now the ValueError the header promises; a valid config still reads the same.
TEST(FuzzRegressions, DiffusersSchedulerOfTheWrongShapeIsAValueError) {
  for (const char* text : {"3", "[]", R"({"num_train_timesteps": "many"})", R"({"num_train_timesteps": 1e300})",
                           R"({"beta_schedule": 7})", R"({"prediction_type": null})"}) {
    EXPECT_THROW(run::diffusion_from_diffusers_scheduler(nlohmann::json::parse(text), false), ValueError) << text;
  }
  const run::DiffusionSettings d = run::diffusion_from_diffusers_scheduler(
      nlohmann::json::parse(R"({"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"})"), false);
  EXPECT_EQ(d.diffusion_steps, 1000);
  EXPECT_EQ(d.noise_schedule, diffusion::NoiseSchedule::cosine);
}

// fuzz_model_config: a diffusers UNet2DModel config whose first block_out_channels is 0 was
// a division by zero (every block's multiplier is computed as b / first).
TEST(FuzzRegressions, DiffusersConfigWithZeroChannelsIsAValueError) {
  const nlohmann::json j = nlohmann::json::parse(
      R"({"block_out_channels": [0, 4], "down_block_types": ["DownBlock2D", "DownBlock2D"],
          "up_block_types": ["UpBlock2D", "UpBlock2D"]})");
  try {
    unet::config_from_diffusers(j);
    FAIL() << "block_out_channels [0, 4] was accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("block_out_channels must be positive, got 0"), std::string::npos) << e.what();
  }
}

// fuzz_model_config: an integer field holding a double out of int's range (1e300) went to
// nlohmann's get<int>(), an undefined float-to-int cast (UBSan); a 64-bit integer wrapped.
// Both config readers now refuse them, naming the field; in-range integers still load.
TEST(FuzzRegressions, ConfigIntegerFieldsOutOfIntRangeAreRefused) {
  unet::UNetConfig cfg;
  cfg.image_size = 8;
  cfg.model_channels = 8;
  cfg.channel_mult = {1, 2};
  cfg.attention_resolutions = {4};
  cfg.norm_groups = 4;
  const nlohmann::json ours = unet::config_to_json(cfg);
  EXPECT_EQ(unet::config_from_json(ours).image_size, 8);
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"image_size", 1e300}, {"model_channels", 8.5}, {"channel_mult", {1, 4294967298LL}},
           {"num_classes", -4294967296LL}}) {
    nlohmann::json bad = ours;
    bad[key] = value;
    try {
      unet::config_from_json(bad);
      ADD_FAILURE() << key << " = " << value.dump() << " was accepted";
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("model config: " + key + " must be an integer"), std::string::npos)
          << e.what();
    }
  }
  const nlohmann::json theirs = unet::config_to_diffusers(cfg);
  EXPECT_EQ(unet::config_from_diffusers(theirs).model_channels, 8);
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"sample_size", 1e300}, {"block_out_channels", {8, 1e300}}, {"layers_per_block", 4294967297LL}}) {
    nlohmann::json bad = theirs;
    bad[key] = value;
    try {
      unet::config_from_diffusers(bad);
      ADD_FAILURE() << key << " = " << value.dump() << " was accepted";
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("diffusers config: " + key + " must be an integer"), std::string::npos)
          << e.what();
    }
  }
  // The noisy classifier's encoder config shares the reader (unet/level_config.h), so it
  // refuses the same values.
  const nlohmann::json enc = unet::encoder_config_to_json(unet::EncoderConfig{});
  EXPECT_EQ(unet::encoder_config_from_json(enc).image_size, unet::EncoderConfig{}.image_size);
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"num_res_blocks", 1e300}, {"num_classes", 4294967306LL}}) {
    nlohmann::json bad = enc;
    bad[key] = value;
    try {
      unet::encoder_config_from_json(bad);
      ADD_FAILURE() << key << " = " << value.dump() << " was accepted";
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("encoder config: " + key + " must be an integer"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace ddpm
