#include "models/data/idx.h"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "engine/error.h"
#include "engine/io/atomic_file.h"

namespace ddpm {

namespace {

std::uint32_t big_endian_u32(const unsigned char* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | std::uint32_t(p[3]);
}

// Decompresses a whole gzip file. gzread returns what it could decode; a stream cut short
// leaves gzerror == Z_BUF_ERROR ("unexpected end of file"), damage gives Z_DATA_ERROR.
std::vector<unsigned char> read_gzip(const std::string& path) {
  gzFile gz = gzopen(path.c_str(), "rb");
  DDPM_CHECK_AS(gz != nullptr, IoError, "cannot open '" << path << "': " << std::strerror(errno));
  gzbuffer(gz, 1 << 17);
  std::vector<unsigned char> out;
  std::vector<unsigned char> chunk(1 << 20);
  for (;;) {
    int n = gzread(gz, chunk.data(), static_cast<unsigned>(chunk.size()));
    if (n > 0) out.insert(out.end(), chunk.begin(), chunk.begin() + n);
    if (n < static_cast<int>(chunk.size())) {
      int err = Z_OK;
      const char* msg = gzerror(gz, &err);
      std::string why = msg ? msg : "";
      gzclose(gz);
      if (n < 0 || err != Z_OK)
        DDPM_THROW(IoError, "the gzip file '" << path << "' is "
                                              << (err == Z_BUF_ERROR ? "truncated" : "damaged") << " (zlib: " << why
                                              << ", after " << out.size() << " decompressed bytes)");
      return out;
    }
  }
}

// Reads the IDX header of `bytes` (from `path`) and checks it against `want_dims`.
// Returns the dimensions; checks the payload size against the file size.
std::vector<std::uint32_t> parse_idx_header(const std::vector<unsigned char>& bytes, const std::string& path,
                                            int want_dims, const char* kind) {
  const std::uint32_t want_magic = 0x00000800u | static_cast<std::uint32_t>(want_dims);
  char want_hex[11];
  std::snprintf(want_hex, sizeof want_hex, "0x%08x", want_magic);
  DDPM_CHECK_AS(bytes.size() >= 4, IoError,
                "IDX " << kind << " file '" << path << "' is " << bytes.size() << " bytes long, too short for a header");
  const std::uint32_t magic = big_endian_u32(bytes.data());
  char got_hex[11];
  std::snprintf(got_hex, sizeof got_hex, "0x%08x", magic);
  DDPM_CHECK_AS((magic & 0xffffff00u) == 0x00000800u, IoError,
                "'" << path << "' is not an IDX " << kind << " file: its magic number is " << got_hex << ", expected "
                    << want_hex << " (unsigned bytes, " << want_dims << " dimensions)");
  const int dims = static_cast<int>(magic & 0xffu);
  DDPM_CHECK_AS(dims == want_dims, IoError,
                "IDX " << kind << " file '" << path << "' has " << dims << " dimensions (magic " << got_hex
                       << "), expected " << want_dims << " (magic " << want_hex << ")");
  const std::size_t header = 4 + 4 * static_cast<std::size_t>(dims);
  DDPM_CHECK_AS(bytes.size() >= header, IoError,
                "IDX " << kind << " file '" << path << "' is truncated inside its header (" << bytes.size()
                       << " bytes, the header needs " << header << ")");
  std::vector<std::uint32_t> shape;
  std::uint64_t payload = 1;
  for (int d = 0; d < dims; ++d) {
    shape.push_back(big_endian_u32(bytes.data() + 4 + 4 * d));
    payload *= shape.back();  // at most 2^96 in principle; real headers are far below 2^64
  }
  const std::uint64_t have = bytes.size() - header;
  DDPM_CHECK_AS(have >= payload, IoError,
                "IDX " << kind << " file '" << path << "' is truncated: its header announces " << payload
                       << " bytes of data but only " << have << " follow");
  DDPM_CHECK_AS(have == payload, IoError,
                "IDX " << kind << " file '" << path << "' is longer than its header says: " << (have - payload)
                       << " bytes follow the " << payload << " bytes of data");
  return shape;
}

}  // namespace

std::vector<unsigned char> read_maybe_gzip(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  DDPM_CHECK_AS(f != nullptr, IoError, "cannot open '" << path << "': " << std::strerror(errno));
  unsigned char magic[2] = {0, 0};
  std::size_t got = std::fread(magic, 1, 2, f);
  std::fclose(f);
  if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) return read_gzip(path);
  std::string s = read_file(path);
  return std::vector<unsigned char>(s.begin(), s.end());
}

Dataset load_idx(const std::string& images_path, const std::string& labels_path, int num_classes,
                 const std::string& name) {
  DDPM_CHECK(num_classes > 0, "load_idx: num_classes must be positive, got " << num_classes);
  std::vector<unsigned char> img = read_maybe_gzip(images_path);
  std::vector<std::uint32_t> shape = parse_idx_header(img, images_path, 3, "image");
  Dataset ds;
  ds.name = name.empty() ? images_path : name;
  ds.n = shape[0];
  ds.height = shape[1];
  ds.width = shape[2];
  ds.channels = 1;
  DDPM_CHECK_AS(ds.height > 0 && ds.width > 0, IoError,
                "IDX image file '" << images_path << "' announces images of " << ds.height << "x" << ds.width);
  ds.images.assign(img.begin() + 16, img.end());
  img = {};
  if (labels_path.empty()) return ds;

  std::vector<unsigned char> lab = read_maybe_gzip(labels_path);
  std::vector<std::uint32_t> lshape = parse_idx_header(lab, labels_path, 1, "label");
  DDPM_CHECK_AS(lshape[0] == shape[0], IoError,
                "IDX label file '" << labels_path << "' holds " << lshape[0] << " labels but the image file '"
                                   << images_path << "' holds " << shape[0] << " images");
  ds.num_classes = num_classes;
  ds.labels.resize(lshape[0]);
  for (std::size_t i = 0; i < ds.labels.size(); ++i) {
    int label = lab[8 + i];
    DDPM_CHECK_AS(label < num_classes, IoError,
                  "IDX label file '" << labels_path << "': label " << label << " of image " << i << " is outside [0, "
                                     << num_classes << ")");
    ds.labels[i] = label;
  }
  return ds;
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

Dataset load_fashion_mnist(const std::string& split, const std::string& dir) {
  DDPM_CHECK(split == "train" || split == "test",
             "load_fashion_mnist: split must be \"train\" or \"test\", got \"" << split << "\"");
  const std::string prefix = split == "train" ? "train" : "t10k";
  auto find = [&](const std::string& base) {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const std::string& candidate : {dir + "/" + base + ".gz", dir + "/" + base})
      if (fs::is_regular_file(candidate, ec)) return candidate;
    DDPM_THROW(IoError, "Fashion-MNIST is not installed: '" << dir << "/" << base
                                                            << ".gz' does not exist (install the Debian package "
                                                               "dataset-fashion-mnist, or pass the folder holding the "
                                                               "files)");
  };
  std::string images = find(prefix + "-images-idx3-ubyte");
  std::string labels = find(prefix + "-labels-idx1-ubyte");
  Dataset ds = load_idx(images, labels, 10, "fashion-mnist/" + split);
  ds.class_names = fashion_mnist_classes();
  return ds;
}

}  // namespace ddpm
