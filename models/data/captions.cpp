#include "models/data/captions.h"

#include <algorithm>
#include <numeric>
#include <unordered_map>

#include "engine/error.h"

namespace ddpm {

double mean_intensity(const std::uint8_t* pixels, std::size_t count) {
  DDPM_CHECK(count > 0, "mean_intensity: the image has no pixels");
  std::uint64_t sum = 0;
  for (std::size_t k = 0; k < count; ++k) sum += pixels[k];
  return static_cast<double>(sum) / static_cast<double>(count);
}

double mean_intensity(const Dataset& ds, std::int64_t i) {
  DDPM_CHECK(i >= 0 && i < ds.n, "mean_intensity: image " << i << " is outside dataset '" << ds.name << "' of "
                                                          << ds.n << " images");
  return mean_intensity(ds.image(i), ds.image_bytes());
}

std::vector<std::string> brightness_attributes(const Dataset& ds) {
  DDPM_CHECK(ds.has_labels(), "brightness_attributes: dataset '"
                                  << ds.name << "' has no labels (the attribute is relative to the image's class)");
  ds.validate();
  std::vector<double> mean(static_cast<std::size_t>(ds.n));
  for (std::int64_t i = 0; i < ds.n; ++i) mean[static_cast<std::size_t>(i)] = mean_intensity(ds, i);
  // The images of each class, in index order.
  std::vector<std::vector<std::int64_t>> members(static_cast<std::size_t>(ds.num_classes));
  for (std::int64_t i = 0; i < ds.n; ++i) members[static_cast<std::size_t>(ds.labels[static_cast<std::size_t>(i)])].push_back(i);
  std::vector<std::string> attr(static_cast<std::size_t>(ds.n));
  for (std::vector<std::int64_t>& m : members) {
    // Rank by (mean intensity, index): the lower floor(m / 2) are the dark half.
    std::stable_sort(m.begin(), m.end(), [&](std::int64_t a, std::int64_t b) {
      return mean[static_cast<std::size_t>(a)] < mean[static_cast<std::size_t>(b)];
    });
    for (std::size_t r = 0; r < m.size(); ++r)
      attr[static_cast<std::size_t>(m[r])] = r < m.size() / 2 ? kDarkAttribute : kLightAttribute;
  }
  return attr;
}

std::string caption_class_name(const std::string& class_name) {
  std::string out;
  for (unsigned char c : class_name) {
    if (c == '/') out += " or ";
    else if (c == '_') out += ' ';
    else out += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  return out;
}

int caption_template(std::int64_t index) {
  // splitmix64's finaliser (Steele et al. 2014): consecutive indices get unrelated bits.
  std::uint64_t z = static_cast<std::uint64_t>(index) + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<int>(z % kCaptionTemplates);
}

std::string caption_text(int t, const std::string& attribute, const std::string& class_name) {
  const bool vowel = !class_name.empty() && std::string("aeiou").find(class_name[0]) != std::string::npos;
  switch (t) {
    case 0: return attribute + " " + class_name;
    case 1: return "a " + attribute + " " + class_name;
    case 2: return std::string("a photo of ") + (vowel ? "an " : "a ") + class_name;
    case 3: return class_name;
    default: DDPM_THROW(ValueError, "caption_text: template " << t << " is outside [0, " << kCaptionTemplates << ")");
  }
}

std::vector<std::string> generate_captions(const Dataset& ds) {
  DDPM_CHECK(ds.has_labels(), "generate_captions: dataset '" << ds.name
                                                             << "' has no labels, so there is no class to name (an "
                                                                "image folder takes its captions from metadata.jsonl)");
  DDPM_CHECK(ds.class_names.size() >= static_cast<std::size_t>(ds.num_classes),
             "generate_captions: dataset '" << ds.name << "' has " << ds.num_classes << " classes but "
                                            << ds.class_names.size() << " class names");
  const std::vector<std::string> attr = brightness_attributes(ds);
  std::vector<std::string> names;
  for (const std::string& c : ds.class_names) names.push_back(caption_class_name(c));
  std::vector<std::string> out(static_cast<std::size_t>(ds.n));
  for (std::int64_t i = 0; i < ds.n; ++i) {
    const std::size_t k = static_cast<std::size_t>(i);
    out[k] = caption_text(caption_template(i), attr[k], names[static_cast<std::size_t>(ds.labels[k])]);
  }
  return out;
}

CaptionTable make_caption_table(const std::vector<std::string>& captions) {
  DDPM_CHECK(!captions.empty(), "make_caption_table: there are no captions (the dataset has none)");
  CaptionTable t;
  std::unordered_map<std::string, std::int64_t> seen;
  t.index.reserve(captions.size());
  for (const std::string& c : captions) {
    auto [it, fresh] = seen.emplace(c, t.size());
    if (fresh) t.texts.push_back(c);
    t.index.push_back(it->second);
  }
  return t;
}

}  // namespace ddpm
