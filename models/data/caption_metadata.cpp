#include "models/data/caption_metadata.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"

namespace ddpm {

namespace {

bool blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(), [](unsigned char c) { return std::isspace(c) != 0; });
}

bool has_word(const std::string& text) {
  return std::any_of(text.begin(), text.end(), [](unsigned char c) { return std::isalnum(c) != 0; });
}

}  // namespace

std::vector<std::string> parse_caption_metadata(const std::string& contents, const std::string& path,
                                                const std::vector<std::string>& images) {
  std::unordered_map<std::string, std::size_t> slot;  // image path -> its position in `images`
  for (std::size_t i = 0; i < images.size(); ++i) slot.emplace(images[i], i);
  std::vector<std::string> captions(images.size());
  std::vector<std::int64_t> line_of(images.size(), 0);  // the line that captioned image i, 0: none yet

  std::size_t begin = 0;
  for (std::int64_t line_no = 1; begin < contents.size(); ++line_no) {
    std::size_t end = contents.find('\n', begin);
    if (end == std::string::npos) end = contents.size();
    const std::string line = contents.substr(begin, end - begin);
    begin = end + 1;
    if (blank(line)) continue;
    const std::string where = "'" + path + "' line " + std::to_string(line_no);

    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      DDPM_THROW(IoError, "caption file " << where << " is not valid JSON: " << e.what());
    }
    DDPM_CHECK_AS(j.is_object(), IoError, "caption file " << where << " is " << j.type_name()
                                                          << ", not a JSON object {\"file_name\": ..., \"text\": ...}");
    for (const char* key : {"file_name", "text"})
      DDPM_CHECK_AS(j.contains(key) && j[key].is_string(), IoError,
                    "caption file " << where << " has no string \"" << key << "\"");
    std::string file = j["file_name"].get<std::string>();
    if (file.compare(0, 2, "./") == 0) file.erase(0, 2);
    const std::string text = j["text"].get<std::string>();

    auto it = slot.find(file);
    DDPM_CHECK_AS(it != slot.end(), IoError,
                  "caption file " << where << " names \"" << file
                                  << "\", which is not an image of the folder (file_name is the path relative to "
                                     "the folder holding "
                                  << kCaptionMetadataFile << ")");
    const std::size_t i = it->second;
    DDPM_CHECK_AS(line_of[i] == 0, IoError,
                  "caption file " << where << " captions \"" << file << "\" again (line " << line_of[i]
                                  << " already did): every image has exactly one caption");
    DDPM_CHECK_AS(has_word(text), IoError,
                  "caption file " << where << ": the text of \"" << file << "\" (\"" << text
                                  << "\") holds no letter or digit");
    captions[i] = text;
    line_of[i] = line_no;
  }
  for (std::size_t i = 0; i < images.size(); ++i)
    DDPM_CHECK_AS(line_of[i] != 0, IoError,
                  "caption file '" << path << "' has no line for the image \"" << images[i]
                                   << "\": when the file exists every image needs a caption");
  return captions;
}

std::vector<std::string> read_caption_metadata(const std::string& path, const std::vector<std::string>& images) {
  return parse_caption_metadata(read_file(path), path, images);
}

}  // namespace ddpm
