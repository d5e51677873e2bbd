// models/data/captions.h: captions for labelled image datasets, and the table of distinct
// captions a text-conditioned training run feeds its text encoder.
//
// Generated captions (Fashion-MNIST, CIFAR-10, the toy shapes, a labelled image folder: any
// dataset with labels and class names). A caption names the class and, in most templates, a
// brightness attribute measured from the pixels, something the class label alone cannot say:
//   mean_intensity(image) = the mean of all its bytes (every pixel, every channel), in [0, 255]
//   attribute = "dark" for the darker half of the image's class, "light" for the brighter
//               half: the class's images are ranked by (mean intensity, index), the first
//               floor(m / 2) of the m are dark. Without ties this is comparing the mean with
//               the class's median; with ties it still splits every class evenly (a class of
//               m images has floor(m / 2) dark and ceil(m / 2) light ones).
// The template is chosen by a hash of the image index (splitmix64 finaliser, mod 4), not by
// its position in a class, so it is independent of the attribute and of the order of loading:
//   0 "{attr} {class}"   1 "a {attr} {class}"   2 "a photo of a {class}"   3 "{class}"
// ("an" before a class name starting with a vowel). Templates 2 and 3 omit the attribute, so a
// model trained on them also learns the attribute-free prompt.
// Class names are made caption-friendly by caption_class_name: lowercased, '/' read as " or ",
// '_' as a space: "T-shirt/top" -> "t-shirt or top", which the tokenizer
// (models/text/tokenizer.h) reads as the words t, shirt, or, top; "Ankle boot" -> "ankle boot".
//
// CaptionTable: the distinct caption strings of a dataset (exact byte equality) in first-seen
// order, and per image the index of its caption in that list. A training loop uses the index as
// the image's "label" and runs the text encoder on the table's rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "models/data/dataset.h"

namespace ddpm {

inline constexpr const char* kDarkAttribute = "dark";
inline constexpr const char* kLightAttribute = "light";
inline constexpr int kCaptionTemplates = 4;

// The mean of `count` bytes, in [0, 255]; ValueError when count is 0.
double mean_intensity(const std::uint8_t* pixels, std::size_t count);
// The mean intensity of image i of ds.
double mean_intensity(const Dataset& ds, std::int64_t i);

// kDarkAttribute or kLightAttribute for every image of a labelled dataset ([n], header
// comment); ValueError for an unlabelled one.
std::vector<std::string> brightness_attributes(const Dataset& ds);

// "T-shirt/top" -> "t-shirt or top" (header comment).
std::string caption_class_name(const std::string& class_name);

// The template (0 .. kCaptionTemplates - 1) that image `index` gets.
int caption_template(std::int64_t index);
// Template `t` filled with an attribute and a caption-friendly class name:
// caption_text(1, "dark", "ankle boot") == "a dark ankle boot". ValueError for t outside [0, 4).
std::string caption_text(int t, const std::string& attribute, const std::string& class_name);

// One caption per image of a dataset with labels and class names ([n]); ValueError naming the
// dataset when it has no labels or fewer class names than classes. Deterministic: the same
// pixels and labels give the same captions.
std::vector<std::string> generate_captions(const Dataset& ds);

struct CaptionTable {
  std::vector<std::string> texts;    // [distinct captions], first-seen order
  std::vector<std::int64_t> index;   // [n]: image i's caption is texts[index[i]]

  std::int64_t size() const { return static_cast<std::int64_t>(texts.size()); }
};

// The table of `captions` ([n], header comment); ValueError when it is empty.
CaptionTable make_caption_table(const std::vector<std::string>& captions);

}  // namespace ddpm
