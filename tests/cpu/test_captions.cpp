// Captions per image (models/data/captions.h, caption_metadata.h, dataset.h): the generated
// captions and their brightness attribute, Dataset::captions checks, metadata.jsonl in image
// folders and its refusals, and the CaptionTable.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "models/data/caption_metadata.h"
#include "models/data/captions.h"
#include "models/data/idx.h"
#include "models/data/image_folder.h"
#include "models/data/toy.h"
#include "models/text/tokenizer.h"
#include "support/temp_dir.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::expect_value_error;
using testing::TempDir;

using testing::expect_has;
using testing::io_error_message;

// 2x2x1 images, image i filled with value[i], labels given; class names as Fashion-MNIST's
// first two.
Dataset flat_images(const std::vector<std::uint8_t>& value, const std::vector<std::int64_t>& labels) {
  Dataset ds;
  ds.name = "flat";
  ds.n = static_cast<std::int64_t>(value.size());
  ds.height = ds.width = 2;
  ds.channels = 1;
  for (std::uint8_t v : value) ds.images.insert(ds.images.end(), 4, v);
  ds.labels = labels;
  ds.num_classes = 2;
  ds.class_names = {"T-shirt/top", "Ankle boot"};
  return ds;
}

TEST(Captions, ClassNamesAndTemplates) {
  EXPECT_EQ(caption_class_name("T-shirt/top"), "t-shirt or top");
  EXPECT_EQ(caption_class_name("Ankle boot"), "ankle boot");
  EXPECT_EQ(caption_class_name("horizontal_bar"), "horizontal bar");
  EXPECT_EQ(text::split_words(caption_class_name("T-shirt/top")), (std::vector<std::string>{"t", "shirt", "or", "top"}));
  EXPECT_EQ(caption_text(0, "dark", "coat"), "dark coat");
  EXPECT_EQ(caption_text(1, "light", "ankle boot"), "a light ankle boot");
  EXPECT_EQ(caption_text(2, "dark", "airplane"), "a photo of an airplane");
  EXPECT_EQ(caption_text(2, "dark", "coat"), "a photo of a coat");
  EXPECT_EQ(caption_text(3, "dark", "coat"), "coat");
  expect_value_error([] { caption_text(4, "dark", "coat"); }, "template 4");
  // Every template is used, about a quarter of the time each.
  std::vector<int> uses(kCaptionTemplates, 0);
  for (std::int64_t i = 0; i < 4000; ++i) uses[static_cast<std::size_t>(caption_template(i))] += 1;
  for (int u : uses) EXPECT_NEAR(u, 1000, 120);
}

TEST(Captions, AttributeSplitsEveryClassAtItsMedianIntensity) {
  // Class 0 is bright overall, class 1 dark overall: the attribute is relative to the class,
  // so both classes get both attributes. Ties (the two 200s) still split evenly.
  const Dataset ds = flat_images({250, 10, 200, 20, 200, 30, 100, 200}, {0, 1, 0, 1, 0, 1, 0, 0});
  EXPECT_DOUBLE_EQ(mean_intensity(ds, 0), 250.0);
  const std::vector<std::string> attr = brightness_attributes(ds);
  // class 0: 250, 200 (2), 200 (4), 100, 200 (7) -> ranked 100, 200#2, 200#4, 200#7, 250: 2 dark.
  EXPECT_EQ(attr, (std::vector<std::string>{"light", "dark", "dark", "light", "light", "light", "dark", "light"}));
  expect_value_error([] { brightness_attributes(flat_images({1, 2}, {})); }, "has no labels");
}

TEST(Captions, GeneratedCaptionsAreDeterministicAndAgreeWithIntensity) {
  const Dataset ds = make_toy_shapes(400, 7, 12);
  const std::vector<std::string> caps = generate_captions(ds);
  ASSERT_EQ(caps.size(), 400u);
  EXPECT_EQ(generate_captions(ds), caps);
  const std::vector<std::string> attr = brightness_attributes(ds);
  std::vector<std::string> names;
  for (const std::string& c : ds.class_names) names.push_back(caption_class_name(c));
  std::vector<int> dark(kToyShapeClasses, 0), light(kToyShapeClasses, 0);
  std::vector<double> max_dark(kToyShapeClasses, -1), min_light(kToyShapeClasses, 1e9);
  for (std::int64_t i = 0; i < ds.n; ++i) {
    const std::size_t k = static_cast<std::size_t>(i), c = static_cast<std::size_t>(ds.labels[k]);
    EXPECT_EQ(caps[k], caption_text(caption_template(i), attr[k], names[c]));
    EXPECT_NE(caps[k].find(names[c]), std::string::npos) << caps[k];
    const double m = mean_intensity(ds, i);
    if (attr[k] == "dark") {
      dark[c] += 1;
      max_dark[c] = std::max(max_dark[c], m);
    } else {
      light[c] += 1;
      min_light[c] = std::min(min_light[c], m);
    }
  }
  for (int c = 0; c < kToyShapeClasses; ++c) {
    EXPECT_LE(std::abs(dark[c] - light[c]), 1) << "class " << c;  // both attributes, evenly
    EXPECT_GT(dark[c], 0);
    EXPECT_LE(max_dark[c], min_light[c]) << "class " << c;  // no dark image brighter than a light one
  }
  // Some captions name the attribute and some do not.
  const auto with_attr = std::count_if(caps.begin(), caps.end(), [](const std::string& s) {
    return s.find("dark") != std::string::npos || s.find("light") != std::string::npos;
  });
  EXPECT_GT(with_attr, 100);
  EXPECT_LT(with_attr, 300);
  // Every caption fits a tokenizer built from them.
  const text::Tokenizer tok = text::Tokenizer::build(caps, text::context_length_for(caps));
  EXPECT_EQ(tok.encode_batch(caps).size(), 400u * static_cast<std::size_t>(tok.context_length()));
}

TEST(Captions, FashionMnistTestSplitGetsBothAttributesPerClass) {
  const Dataset ds = load_fashion_mnist("test");
  const std::vector<std::string> caps = generate_captions(ds);
  const std::vector<std::string> attr = brightness_attributes(ds);
  std::vector<double> sum_dark(10, 0), sum_light(10, 0);
  std::vector<int> dark(10, 0), light(10, 0);
  for (std::int64_t i = 0; i < ds.n; ++i) {
    const std::size_t k = static_cast<std::size_t>(i), c = static_cast<std::size_t>(ds.labels[k]);
    (attr[k] == "dark" ? sum_dark[c] : sum_light[c]) += mean_intensity(ds, i);
    (attr[k] == "dark" ? dark[c] : light[c]) += 1;
  }
  for (int c = 0; c < 10; ++c) {
    EXPECT_EQ(dark[c], 500) << "class " << c;  // 1000 test images per class
    EXPECT_EQ(light[c], 500) << "class " << c;
    EXPECT_LT(sum_dark[c] / dark[c], sum_light[c] / light[c]) << "class " << c;
  }
  EXPECT_EQ(caps[0].find("ankle boot") != std::string::npos, ds.labels[0] == 9) << caps[0];
  // The words of all captions: 2 attributes, "a", "an", "photo", "of", and the class words
  // t shirt or top trouser pullover dress coat sandal sneaker bag ankle boot (13: "Shirt"
  // shares "shirt" with "T-shirt"); "a" and "an" both occur: "a photo of an ankle boot".
  const text::Tokenizer tok = text::Tokenizer::build(caps, text::context_length_for(caps));
  EXPECT_EQ(tok.vocab_size(), text::kNumSpecialTokens + 2 + 4 + 13);
  EXPECT_EQ(tok.context_length(), 2 + 8);  // "a photo of a t shirt or top": 8 words
}

TEST(Captions, DatasetChecksCaptionsAndTakeKeepsThem) {
  Dataset ds = flat_images({1, 2, 3}, {0, 1, 0});
  ds.captions = {"a", "b", "c"};
  ds.validate();
  EXPECT_EQ(take(ds, 2).captions, (std::vector<std::string>{"a", "b"}));
  ds.captions = {"a", "b"};
  expect_value_error([&] { ds.validate(); }, "has 2 captions for 3 images");
  ds.captions = {"a", " - ", "c"};
  expect_value_error([&] { ds.validate(); }, "the caption of image 1 (\" - \") holds no letter or digit");
}

TEST(Captions, TableListsDistinctCaptionsInFirstSeenOrder) {
  const CaptionTable t = make_caption_table({"dark coat", "bag", "dark coat", "Bag", "bag"});
  EXPECT_EQ(t.texts, (std::vector<std::string>{"dark coat", "bag", "Bag"}));
  EXPECT_EQ(t.index, (std::vector<std::int64_t>{0, 1, 0, 2, 1}));
  EXPECT_EQ(t.size(), 3);
  expect_value_error([] { make_caption_table({}); }, "no captions");
}

TEST(CaptionMetadata, ImageFolderReadsMetadataJsonl) {
  TempDir dir;
  std::vector<std::uint8_t> px(4 * 4, 9);
  fs::create_directories(dir.path + "/coat");
  fs::create_directories(dir.path + "/bag");
  write_png(dir.path + "/coat/1.png", px.data(), 4, 4, 1);
  write_png(dir.path + "/coat/0.png", px.data(), 4, 4, 1);
  write_png(dir.path + "/bag/5.png", px.data(), 4, 4, 1);
  // Without the file: no captions.
  EXPECT_FALSE(load_image_folder(dir.path).has_captions());
  write_file_atomic(dir.path + "/metadata.jsonl",
                    std::string("{\"file_name\": \"coat/1.png\", \"text\": \"a light coat\", \"extra\": 3}\n"
                                "\n"
                                "{\"file_name\": \"./bag/5.png\", \"text\": \"bag\"}\n"
                                "{\"text\": \"a dark coat\", \"file_name\": \"coat/0.png\"}\n"));
  const Dataset ds = load_image_folder(dir.path);
  // Order: class folders alphabetical (bag, coat), files alphabetical inside.
  EXPECT_EQ(ds.captions, (std::vector<std::string>{"bag", "a dark coat", "a light coat"}));
  EXPECT_EQ(ds.labels, (std::vector<std::int64_t>{0, 1, 1}));
  ds.validate();
}

TEST(CaptionMetadata, RefusalsNameFileLineAndProblem) {
  const std::vector<std::string> images = {"a.png", "b.png"};
  auto parse = [&](const std::string& text) {
    return io_error_message([&] { parse_caption_metadata(text, "dir/metadata.jsonl", images); });
  };
  const std::string a = "{\"file_name\": \"a.png\", \"text\": \"x\"}\n";
  const std::string b = "{\"file_name\": \"b.png\", \"text\": \"y\"}\n";
  EXPECT_EQ(parse_caption_metadata(a + b, "m", images), (std::vector<std::string>{"x", "y"}));

  std::string m = parse(a + "{\"file_name\": \"b.png\", \n");
  expect_has(m, "'dir/metadata.jsonl' line 2 is not valid JSON");
  expect_has(parse(a + "[1]\n"), "line 2 is array, not a JSON object");
  expect_has(parse(a + "{\"file_name\": \"b.png\"}\n"), "line 2 has no string \"text\"");
  expect_has(parse(a + "{\"file_name\": 4, \"text\": \"y\"}\n"), "line 2 has no string \"file_name\"");
  expect_has(parse(a + "{\"file_name\": \"c.png\", \"text\": \"y\"}\n"), "line 2 names \"c.png\", which is not an image");
  expect_has(parse(b + a + "{\"file_name\": \"a.png\", \"text\": \"z\"}\n"),
             "line 3 captions \"a.png\" again (line 2 already did)");
  expect_has(parse(a + "{\"file_name\": \"b.png\", \"text\": \"  \"}\n"), "line 2: the text of \"b.png\"");
  m = parse(a);
  expect_has(m, "'dir/metadata.jsonl' has no line for the image \"b.png\"");

  // Through the folder loader: the error names the real file.
  TempDir dir;
  std::vector<std::uint8_t> px(4, 1);
  write_png(dir.path + "/a.png", px.data(), 2, 2, 1);
  write_file_atomic(dir.path + "/metadata.jsonl", std::string("{\"file_name\": \"a.png\"}\n"));
  m = io_error_message([&] { load_image_folder(dir.path); });
  expect_has(m, dir.path + "/metadata.jsonl' line 1 has no string \"text\"");
}

}  // namespace
}  // namespace ddpm
