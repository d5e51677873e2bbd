// models/run/descriptor.h: a folder's JSON descriptor is read only when it exists, parses and
// carries the expected "architecture" tag; each of the three failures is an IoError naming the
// file, and the wrong-tag one names both tags. Then each loader that reads a descriptor (toy
// model, toy classifier, noisy classifier, ControlNet run) refuses a folder of another kind
// through it, before touching any weights.
#include <string>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/run/classifier_run.h"
#include "models/run/control_run.h"
#include "engine/io/descriptor.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/eval/classifier.h"
#include "models/run/toy_run.h"
#include "support/temp_dir.h"

namespace ddpm::run {
namespace {

const DescriptorKind kToy{"config.json", "toy-mlp", "a toy model", "ddpm-toy train"};

// The message of the IoError that f() throws, or "no error".
template <class F>
std::string io_error_message(F&& f) {
  try {
    f();
  } catch (const IoError& e) {
    return e.what();
  }
  return "no error";
}

#define EXPECT_HAS(message, fragment) \
  EXPECT_NE((message).find(fragment), std::string::npos) << "no '" << (fragment) << "' in: " << (message)

TEST(Descriptor, ATaggedObjectIsReturnedAsParsed) {
  testing::TempDir dir("descriptor");
  const std::string text = R"({"architecture": "toy-mlp", "model": {"hidden": 64}, "data": "moons"})";
  write_file_atomic(dir.path + "/config.json", text);
  EXPECT_EQ(read_descriptor(dir.path, kToy), nlohmann::json::parse(text));
}

TEST(Descriptor, AMissingFileNamesThePathTheKindAndWhoMakesIt) {
  testing::TempDir dir("descriptor");
  write_file_atomic(dir.path + "/classifier.json", std::string(R"({"architecture": "toy-mlp"})"));  // the wrong name
  const std::string m = io_error_message([&] { read_descriptor(dir.path, kToy); });
  EXPECT_HAS(m, "there is no " + dir.path + "/config.json");
  EXPECT_HAS(m, "is not a toy model");
  EXPECT_HAS(m, "ddpm-toy train");
  // A folder that does not exist at all reads the same way.
  EXPECT_HAS(io_error_message([&] { read_descriptor(dir.path + "/nothing", kToy); }),
             "there is no " + dir.path + "/nothing/config.json");
}

TEST(Descriptor, BadJsonNamesTheFile) {
  testing::TempDir dir("descriptor");
  write_file_atomic(dir.path + "/config.json", std::string("{\"architecture\": \"toy-mlp\", "));  // cut short
  const std::string m = io_error_message([&] { read_descriptor(dir.path, kToy); });
  EXPECT_HAS(m, dir.path + "/config.json is not valid JSON: ");
}

TEST(Descriptor, AnotherTagIsRefusedNamingBothTags) {
  testing::TempDir dir("descriptor");
  const std::string path = dir.path + "/config.json";
  write_file_atomic(path, std::string(R"({"architecture": "noisy-classifier"})"));
  const std::string m = io_error_message([&] { read_descriptor(dir.path, kToy); });
  EXPECT_HAS(m, path + " does not describe a toy model (\"architecture\": \"toy-mlp\")");
  EXPECT_HAS(m, "its \"architecture\" is \"noisy-classifier\"");
  EXPECT_HAS(m, "train one with ddpm-toy train");
  // No tag, a tag that is not a string, and JSON that is not an object are the same refusal.
  write_file_atomic(path, std::string(R"({"model": {}})"));
  EXPECT_HAS(io_error_message([&] { read_descriptor(dir.path, kToy); }), "it has no \"architecture\"");
  write_file_atomic(path, std::string(R"({"architecture": 3})"));
  EXPECT_HAS(io_error_message([&] { read_descriptor(dir.path, kToy); }), "its \"architecture\" is 3");
  write_file_atomic(path, std::string(R"(["toy-mlp"])"));
  EXPECT_HAS(io_error_message([&] { read_descriptor(dir.path, kToy); }), "it holds a JSON array, not an object");
}

TEST(Descriptor, EveryLoaderRefusesAFolderOfAnotherKind) {
  testing::TempDir dir("descriptor");
  // One folder holding a config.json and a classifier.json of kinds none of the loaders read.
  write_file_atomic(dir.path + "/config.json", std::string(R"({"architecture": "ddpm-eval-cnn"})"));
  write_file_atomic(dir.path + "/classifier.json", std::string(R"({"architecture": "ddpm-eval-cnn"})"));
  auto refused = [](const std::string& m, const std::string& expected) {
    EXPECT_HAS(m, "(\"architecture\": \"" + expected + "\")");
    EXPECT_HAS(m, "its \"architecture\" is \"ddpm-eval-cnn\"");
  };
  refused(io_error_message([&] { load_toy_model(dir.path, false); }), kToyArchitecture);
  refused(io_error_message([&] { load_toy_classifier(dir.path); }), "toy-mlp-classifier");
  refused(io_error_message([&] { load_noisy_classifier(dir.path, Device::cpu()); }), kNoisyClassifierArchitecture);
  refused(io_error_message([&] { open_control_run(dir.path, Device::cpu()); }), kControlNetArchitecture);
}

TEST(Descriptor, TheFeatureClassifierAndTheAutoencoderCheckTheirTagsWithIt) {
  // models/eval and models/autoencoder read their descriptors through engine/io/descriptor.h:
  // a toy model's folder given as either is refused naming both tags.
  testing::TempDir dir("descriptor");
  write_file_atomic(dir.path + "/config.json", std::string(R"({"architecture": "toy-mlp"})"));
  const std::string ae = io_error_message([&] { autoencoder::load_autoencoder(dir.path, Device::cpu()); });
  EXPECT_HAS(ae, dir.path + "/config.json does not describe an autoencoder (\"architecture\": \"autoencoder-kl\")");
  EXPECT_HAS(ae, "its \"architecture\" is \"toy-mlp\"");
  EXPECT_HAS(ae, "ddpm-autoencoder train");
  const std::string cls = io_error_message([&] { eval::load_classifier(dir.path, Device::cpu()); });
  EXPECT_HAS(cls, "there is no " + dir.path + "/classifier.json");
  EXPECT_HAS(cls, "ddpm-eval train-classifier");
  write_file_atomic(dir.path + "/classifier.json", std::string(R"({"architecture": "toy-mlp"})"));
  EXPECT_HAS(io_error_message([&] { eval::load_classifier(dir.path, Device::cpu()); }),
             "does not describe a feature classifier (\"architecture\": \"" + std::string(eval::kClassifierArchitecture));
}

}  // namespace
}  // namespace ddpm::run
