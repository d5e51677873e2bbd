// models/data/caption_metadata.h: an image folder's captions, in the metadata.jsonl convention
// of Hugging Face's ImageFolder loader (the datasets library, "Image dataset" guide, as used
// by diffusers' text-to-image training scripts): a file `metadata.jsonl` beside the images,
// one JSON object per line, e.g.
//   {"file_name": "0001.png", "text": "a dark coat"}
//   {"file_name": "coat/0002.png", "text": "a light coat"}
// "file_name" is the image's path relative to the folder holding metadata.jsonl ('/'
// separated; a leading "./" is ignored); "text" is its caption. Other keys are ignored. Lines
// holding only whitespace are skipped (a final newline is not an empty record).
//
// When the file exists every image must have exactly one caption: a line that is not a JSON
// object, lacks a string "file_name" or "text", has a text without a letter or digit, names an
// image that is not in the folder or one already captioned, and an image no line names, are
// each an IoError naming the file, the line (1-based) and the problem.
#pragma once

#include <string>
#include <vector>

namespace ddpm {

inline constexpr const char* kCaptionMetadataFile = "metadata.jsonl";

// The captions of `images` (paths relative to the folder, as "file_name" spells them), in the
// same order, from the metadata.jsonl at `path` (header comment for the errors).
std::vector<std::string> read_caption_metadata(const std::string& path, const std::vector<std::string>& images);

// The same, parsed from `contents`; `path` only names the file in messages.
std::vector<std::string> parse_caption_metadata(const std::string& contents, const std::string& path,
                                                const std::vector<std::string>& images);

}  // namespace ddpm
