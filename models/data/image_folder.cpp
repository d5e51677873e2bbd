#include "models/data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "engine/error.h"
#include "engine/io/png.h"
#include "models/data/caption_metadata.h"

namespace ddpm {

namespace fs = std::filesystem;

namespace {

bool is_png_name(const std::string& name) {
  if (name.size() < 5 || name[0] == '.') return false;
  std::string ext = name.substr(name.size() - 4);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png";
}

// Sorted PNG files and sorted (non-hidden) sub-folders of `dir`.
void list_folder(const std::string& dir, std::vector<std::string>& pngs, std::vector<std::string>& subdirs) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  DDPM_CHECK_AS(!ec, IoError, "cannot list folder '" << dir << "': " << ec.message());
  for (const auto& entry : it) {
    std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (entry.is_directory(ec)) subdirs.push_back(name);
    else if (is_png_name(name)) pngs.push_back(name);
  }
  std::sort(pngs.begin(), pngs.end());
  std::sort(subdirs.begin(), subdirs.end());
}

void add_image(Dataset& ds, const std::string& file, std::int64_t label) {
  Image img = read_png(file);
  if (ds.n == 0) {
    ds.height = img.height;
    ds.width = img.width;
    ds.channels = img.channels;
  }
  DDPM_CHECK_AS(img.height == ds.height && img.width == ds.width && img.channels == ds.channels, IoError,
                "image folder '" << ds.name << "': '" << file << "' is " << img.height << "x" << img.width << "x"
                                 << img.channels << " but the images before it are " << ds.height << "x" << ds.width
                                 << "x" << ds.channels << " (all images must share one size)");
  ds.images.insert(ds.images.end(), img.pixels.begin(), img.pixels.end());
  if (label >= 0) ds.labels.push_back(label);
  ds.n += 1;
}

// Reads <dir>/metadata.jsonl into ds.captions when it exists; `files` are the images' paths
// relative to dir, in the dataset's order.
void add_captions(Dataset& ds, const std::string& dir, const std::vector<std::string>& files) {
  const std::string path = dir + "/" + kCaptionMetadataFile;
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  ds.captions = read_caption_metadata(path, files);
}

}  // namespace

Dataset load_image_folder(const std::string& dir) {
  std::error_code ec;
  DDPM_CHECK_AS(fs::is_directory(dir, ec), IoError, "image folder '" << dir << "' does not exist or is not a folder");
  std::vector<std::string> pngs, classes;
  list_folder(dir, pngs, classes);
  Dataset ds;
  ds.name = dir;
  if (classes.empty()) {
    DDPM_CHECK_AS(!pngs.empty(), IoError, "image folder '" << dir << "' holds no .png files and no class sub-folders");
    for (const std::string& f : pngs) add_image(ds, dir + "/" + f, -1);
    add_captions(ds, dir, pngs);
    return ds;
  }
  DDPM_CHECK_AS(pngs.empty(), IoError,
                "image folder '" << dir << "' mixes class sub-folders with loose .png files (such as '" << pngs[0]
                                 << "'): put every image in a class folder, or use no sub-folders at all");
  ds.num_classes = static_cast<int>(classes.size());
  ds.class_names = classes;
  std::vector<std::string> relative;  // "<class>/<image>.png", in the dataset's order
  for (std::size_t c = 0; c < classes.size(); ++c) {
    const std::string sub = dir + "/" + classes[c];
    std::vector<std::string> files, nested;
    list_folder(sub, files, nested);
    DDPM_CHECK_AS(!files.empty(), IoError,
                  "class folder '" << sub << "' holds no .png files (every class needs at least one image)");
    for (const std::string& f : files) {
      add_image(ds, sub + "/" + f, static_cast<std::int64_t>(c));
      relative.push_back(classes[c] + "/" + f);
    }
  }
  add_captions(ds, dir, relative);
  return ds;
}

}  // namespace ddpm
