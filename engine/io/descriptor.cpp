// engine/io/descriptor.cpp: see descriptor.h.
#include "engine/io/descriptor.h"

#include <filesystem>
#include <system_error>

#include "engine/error.h"
#include "engine/io/atomic_file.h"

namespace ddpm {

namespace {

// What stands where the expected tag should, for the wrong-kind message: a user who passed
// the wrong folder learns which kind it is (a "noisy-classifier" given as a toy model).
std::string found_instead(const nlohmann::json& j) {
  if (!j.is_object()) return "it holds a JSON " + std::string(j.type_name()) + ", not an object";
  const auto it = j.find("architecture");
  if (it == j.end()) return "it has no \"architecture\"";
  return "its \"architecture\" is " + it->dump();
}

}  // namespace

nlohmann::json read_descriptor(const std::string& dir, const DescriptorKind& kind) {
  const std::string path = (std::filesystem::path(dir) / kind.file).string();
  std::error_code ec;
  DDPM_CHECK_AS(std::filesystem::is_regular_file(path, ec), IoError,
                "there is no " << path << ": " << dir << " is not " << kind.what << " (those are written by "
                               << kind.made_by << ")");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(IoError, path << " is not valid JSON: " << e.what());
  }
  const bool tagged = j.is_object() && j.contains("architecture") && j["architecture"].is_string() &&
                      j["architecture"].get<std::string>() == kind.architecture;
  DDPM_CHECK_AS(tagged, IoError,
                path << " does not describe " << kind.what << " (\"architecture\": \"" << kind.architecture
                     << "\"): " << found_instead(j) << "; train one with " << kind.made_by);
  return j;
}

}  // namespace ddpm
