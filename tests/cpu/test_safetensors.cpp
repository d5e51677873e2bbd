// safetensors: round trips, the exact byte layout, every malformed-file check, the CRC,
// and atomicity of saves.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "support/temp_dir.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

// Expects load_safetensors(path) to throw an IoError whose message contains `needle`.
void expect_load_error(const std::string& path, const std::string& needle) {
  try {
    load_safetensors(path);
    ADD_FAILURE() << "expected an IoError mentioning \"" << needle << "\"";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "message does not name the file: " << e.what();
  }
}

TEST(Safetensors, RoundTripKeepsOrderValuesDtypesAndMetadata) {
  TempDir dir;
  const std::string f = dir.path + "/m.safetensors";
  Tensor a = Tensor::from_vector(std::vector<float>{1.5f, -2.f, 3.25f, 0.f, 1e-30f, -7.f}, {2, 3});
  Tensor b = Tensor::from_vector(std::vector<double>{3.141592653589793, -1e300, 2.0}, {3});
  Tensor s = Tensor::scalar(42.0);
  Tensor e = Tensor::zeros({0, 5});
  Tensor h = Tensor::empty({2}, DType::bf16);
  std::uint16_t bits[2] = {0x3f80, 0xc000};  // bf16 1.0, -2.0
  std::memcpy(h.raw_data(), bits, 4);
  save_safetensors(f, {{"z.weight", a}, {"a.bias", b}, {"scalar", s}, {"empty", e}, {"half", h}},
                   {{"step", "100"}, {"format", "pt"}});

  SafetensorsFile file = load_safetensors(f);
  ASSERT_EQ(file.tensors.size(), 5u);
  EXPECT_EQ(file.tensors[0].first, "z.weight");
  EXPECT_EQ(file.tensors[1].first, "a.bias");
  EXPECT_EQ(file.get("z.weight").shape(), (Shape{2, 3}));
  EXPECT_EQ(file.get("z.weight").to_vector(), a.to_vector());
  EXPECT_EQ(file.get("a.bias").dtype(), DType::f64);
  EXPECT_EQ(file.get("a.bias").to_double_vector(), b.to_double_vector());
  EXPECT_EQ(file.get("scalar").ndim(), 0);
  EXPECT_EQ(file.get("scalar").item(), 42.0);
  EXPECT_EQ(file.get("empty").shape(), (Shape{0, 5}));
  EXPECT_EQ(file.get("half").dtype(), DType::bf16);
  EXPECT_EQ(std::memcmp(file.get("half").raw_data(), bits, 4), 0);
  EXPECT_EQ(file.metadata.at("step"), "100");
  EXPECT_EQ(file.metadata.at("format"), "pt");
  EXPECT_EQ(file.metadata.at(kSafetensorsCrcKey).size(), 8u);
  EXPECT_TRUE(file.contains("half"));
  EXPECT_FALSE(file.contains("nope"));
  EXPECT_THROW(file.get("nope"), IoError);
}

TEST(Safetensors, ByteLayoutFollowsTheSpec) {
  TempDir dir;
  const std::string f = dir.path + "/m.safetensors";
  save_safetensors(f, {{"w", Tensor::from_vector(std::vector<float>{1, 2, 3}, {3})},
                       {"v", Tensor::from_vector(std::vector<double>{4}, {1, 1})}});
  std::string bytes = read_file(f);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);  // data buffer 8-byte aligned
  ASSERT_EQ(bytes.size(), 8 + n + 12 + 8);
  EXPECT_EQ(bytes[8], '{');
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["w"]["dtype"], "F32");
  EXPECT_EQ(header["w"]["shape"], nlohmann::json::array({3}));
  EXPECT_EQ(header["w"]["data_offsets"], nlohmann::json::array({0, 12}));
  EXPECT_EQ(header["v"]["dtype"], "F64");
  EXPECT_EQ(header["v"]["data_offsets"], nlohmann::json::array({12, 20}));
  EXPECT_TRUE(header["__metadata__"][kSafetensorsCrcKey].is_string());
  float w[3];
  std::memcpy(w, bytes.data() + 8 + n, 12);
  EXPECT_EQ(w[2], 3.f);
}

// A file as another writer (Python) would make it: no CRC, tensors listed out of data
// order, header padded with spaces.
TEST(Safetensors, LoadsForeignFilesWithoutCrc) {
  TempDir dir;
  const std::string f = dir.path + "/foreign.safetensors";
  std::string json =
      R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  float vals[3] = {1.f, 2.f, 3.f};
  std::string bytes = safetensors_header_bytes(json) + std::string(reinterpret_cast<char*>(vals), 12);
  write_file_atomic(f, bytes);
  SafetensorsFile file = load_safetensors(f);
  ASSERT_EQ(file.tensors.size(), 2u);
  EXPECT_EQ(file.tensors[0].first, "a");  // data order
  EXPECT_EQ(file.get("a").to_vector(), (std::vector<float>{1, 2}));
  EXPECT_EQ(file.get("b").to_vector(), (std::vector<float>{3}));
  EXPECT_TRUE(file.metadata.empty());
}

TEST(Safetensors, EveryMalformedFileGetsItsOwnMessage) {
  TempDir dir;
  int count = 0;
  auto file_with = [&](const std::string& bytes) {
    std::string f = dir.path + "/bad" + std::to_string(count++) + ".safetensors";
    write_file_atomic(f, bytes);
    return f;
  };
  auto with_header = [&](const std::string& json, std::size_t data_bytes) {
    return file_with(safetensors_header_bytes(json) + std::string(data_bytes, '\0'));
  };
  auto le64 = [](std::uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
  };
  const std::string ok = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

  expect_load_error(dir.path + "/absent.safetensors", "cannot open");
  expect_load_error(file_with("abcde"), "shorter than the 8-byte");
  expect_load_error(file_with(le64(1000) + "{}"), "truncated");
  expect_load_error(file_with(le64(std::uint64_t(1) << 40) + "{}"), "limit");
  expect_load_error(with_header("{\"t\": [1, 2", 0), "not valid JSON");
  expect_load_error(with_header("[1, 2]", 0), "not an object");
  expect_load_error(with_header(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", 8), "no \"dtype\" field");
  expect_load_error(with_header(R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", 8), "no \"shape\" field");
  expect_load_error(with_header(R"({"t":{"dtype":"F32","shape":[2]}})", 8), "no \"data_offsets\" field");
  expect_load_error(with_header(R"({"t":7})", 0), "must be an object");
  expect_load_error(with_header(R"({"t":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8), "\"dtype\" must be a string");
  expect_load_error(with_header(R"({"t":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8),
                    "\"shape\" must be an array");
  expect_load_error(with_header(R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8), "non-integer");
  expect_load_error(with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), "two integers");
  expect_load_error(with_header(R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype 'F33'");
  expect_load_error(with_header(R"({"t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8), "does not support");
  expect_load_error(with_header(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "negative dimension");
  expect_load_error(with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "end before");
  expect_load_error(with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4), "past the end");
  expect_load_error(with_header(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "span 8 bytes");
  expect_load_error(with_header(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
                    "more than the file holds");
  expect_load_error(with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "gap of 4 bytes");
  expect_load_error(
      with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                  12),
      "overlaps");
  expect_load_error(with_header("{" + ok + "," + ok + "}", 8), "'t' appears twice");
  expect_load_error(with_header("{" + ok + "}", 12), "4 trailing bytes");
  expect_load_error(with_header("{\"__metadata__\":{\"k\":1}," + ok + "}", 8), "must be a string");
  expect_load_error(with_header("{\"__metadata__\":[]," + ok + "}", 8), "__metadata__ must be an object");
}

TEST(Safetensors, AFlippedDataByteIsCaughtByTheCrc) {
  TempDir dir;
  const std::string f = dir.path + "/m.safetensors";
  save_safetensors(f, {{"w", Tensor::full({64}, 0.5)}});
  std::string bytes = read_file(f);
  bytes[bytes.size() - 17] ^= 0x04;
  write_file_atomic(f, bytes);
  expect_load_error(f, "is corrupt");
}

TEST(Safetensors, AFailedSaveLeavesTheOldFile) {
  TempDir dir;
  const std::string f = dir.path + "/m.safetensors";
  save_safetensors(f, {{"w", Tensor::full({4}, 1.0)}}, {{"step", "1"}});
  // The second tensor cannot be copied: nothing is written.
  EXPECT_THROW(save_safetensors(f, {{"w", Tensor::full({4}, 2.0)}, {"bad", Tensor()}}), ValueError);
  EXPECT_THROW(save_safetensors(f, {{"w", Tensor::full({4}, 2.0)}, {"w", Tensor::full({4}, 2.0)}}), ValueError);
  EXPECT_THROW(save_safetensors(f, {{"__metadata__", Tensor::full({4}, 2.0)}}), ValueError);
  EXPECT_THROW(save_safetensors(f, {{std::string("bad\xff"), Tensor::full({4}, 2.0)}}), ValueError);
  EXPECT_THROW(save_safetensors(dir.path + "/missing/m.safetensors", {{"w", Tensor::full({4}, 2.0)}}), IoError);
  SafetensorsFile file = load_safetensors(f);
  EXPECT_EQ(file.metadata.at("step"), "1");
  EXPECT_EQ(file.get("w").to_vector(), (std::vector<float>{1, 1, 1, 1}));
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) n += e.path().filename() == "m.safetensors" ? 1 : 100;
  EXPECT_EQ(n, 1u);  // no temporaries left behind
}

}  // namespace
}  // namespace ddpm
