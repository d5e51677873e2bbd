// Datasets: IDX (plain, gzip, and damaged copies), the real Fashion-MNIST files, CIFAR-10
// batches, image folders, the toy datasets and pad_to.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "models/data/cifar10.h"
#include "models/data/idx.h"
#include "models/data/image_folder.h"
#include "models/data/toy.h"
#include "support/temp_dir.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

template <typename F>
void expect_io_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an IoError mentioning \"" << needle << "\"";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

std::string be32(std::uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}

// Five 4x3 images (pixel (i, y, x) = 10 i + 3 y + x) and their labels 0..4.
std::string idx_images(std::uint32_t magic = 0x803, int n = 5) {
  std::string s = be32(magic) + be32(n) + be32(4) + be32(3);
  for (int i = 0; i < n; ++i)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 3; ++x) s.push_back(static_cast<char>(10 * i + 3 * y + x));
  return s;
}
std::string idx_labels(std::vector<int> labels = {0, 1, 2, 3, 4}) {
  std::string s = be32(0x801) + be32(static_cast<std::uint32_t>(labels.size()));
  for (int l : labels) s.push_back(static_cast<char>(l));
  return s;
}
void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  ASSERT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(gz);
}

TEST(Idx, PlainAndGzipLoadTheSameImages) {
  TempDir dir;
  const std::string img = dir.path + "/img", lab = dir.path + "/lab", imggz = dir.path + "/img.gz";
  write_file_atomic(img, idx_images());
  write_file_atomic(lab, idx_labels());
  write_gzip(imggz, idx_images());
  write_gzip(dir.path + "/lab.gz", idx_labels());
  Dataset a = load_idx(img, lab);
  Dataset b = load_idx(imggz, dir.path + "/lab.gz", 10, "tiny");
  EXPECT_EQ(a.n, 5);
  EXPECT_EQ(a.height, 4);
  EXPECT_EQ(a.width, 3);
  EXPECT_EQ(a.channels, 1);
  EXPECT_EQ(a.image(2)[1 * 3 + 2], 10 * 2 + 3 + 2);  // image 2, y 1, x 2
  EXPECT_EQ(a.labels, (std::vector<std::int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(a.images, b.images);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(b.name, "tiny");
  Dataset u = load_idx(img);
  EXPECT_FALSE(u.has_labels());
  EXPECT_EQ(u.num_classes, 0);
}

TEST(Idx, DamagedFilesAreNamedAndExplained) {
  TempDir dir;
  const std::string lab = dir.path + "/lab";
  write_file_atomic(lab, idx_labels());
  auto file = [&](const std::string& name, const std::string& bytes) {
    write_file_atomic(dir.path + "/" + name, bytes);
    return dir.path + "/" + name;
  };
  const std::string good = file("good", idx_images());
  expect_io_error([&] { load_idx(dir.path + "/absent", lab); }, "absent");
  expect_io_error([&] { load_idx(file("magic", idx_images(0x12345678)), lab); }, "magic number is 0x12345678");
  expect_io_error([&] { load_idx(lab, lab); }, "has 1 dimensions");
  expect_io_error([&] { load_idx(good, good); }, "has 3 dimensions");
  std::string full = idx_images();
  expect_io_error([&] { load_idx(file("short", full.substr(0, full.size() - 1)), lab); }, "truncated");
  expect_io_error([&] { load_idx(file("hdr", full.substr(0, 10)), lab); }, "inside its header");
  expect_io_error([&] { load_idx(file("long", full + "x"), lab); }, "1 bytes follow");
  expect_io_error([&] { load_idx(good, file("lab4", idx_labels({0, 1, 2, 3}))); }, "holds 4 labels");
  expect_io_error([&] { load_idx(good, file("lab12", idx_labels({0, 1, 12, 3, 4}))); }, "label 12 of image 2");
  expect_io_error([&] { load_idx(good, lab, 3); }, "label 3 of image 3 is outside [0, 3)");

  // gzip cut in half, and gzip with a damaged byte in the middle.
  const std::string gz = dir.path + "/full.gz";
  std::string big = idx_images(0x803, 400);
  write_gzip(gz, big);
  std::string bytes = read_file(gz);
  expect_io_error([&] { load_idx(file("half.gz", bytes.substr(0, bytes.size() / 2)), lab); }, "truncated");
  bytes[bytes.size() - 6] ^= 0x55;  // inside the CRC-32 trailer
  expect_io_error([&] { load_idx(file("flip.gz", bytes), lab); }, "damaged");
}

TEST(FashionMnist, RealFilesHaveTheKnownShapeAndLabels) {
  Dataset train = load_fashion_mnist("train");
  Dataset test = load_fashion_mnist("test");
  EXPECT_EQ(train.n, 60000);
  EXPECT_EQ(test.n, 10000);
  for (const Dataset* d : {&train, &test}) {
    EXPECT_EQ(d->height, 28);
    EXPECT_EQ(d->width, 28);
    EXPECT_EQ(d->channels, 1);
    EXPECT_EQ(d->num_classes, 10);
    std::vector<int> counts(10, 0);
    for (auto l : d->labels) ++counts.at(static_cast<std::size_t>(l));
    for (int c : counts) EXPECT_EQ(c, d->n / 10);  // balanced: 6000 / 1000 per class
    EXPECT_NO_THROW(d->validate());
  }
  EXPECT_EQ(train.labels[0], 9);  // the first training image is an ankle boot
  EXPECT_EQ(train.class_names[9], "Ankle boot");
  Dataset padded = pad_to(take(test, 3), 32);
  EXPECT_EQ(padded.height, 32);
  EXPECT_EQ(padded.image(1)[(2 + 5) * 32 + 2 + 7], test.image(1)[5 * 28 + 7]);

  expect_io_error([] { load_fashion_mnist("train", "/nonexistent/fmnist"); }, "dataset-fashion-mnist");
  EXPECT_THROW(load_fashion_mnist("val"), ValueError);
}

TEST(Cifar10, RecordsAreTransposedFromPlanesToHwc) {
  TempDir dir;
  // Record r: label r, channel c plane value at pixel p = (r + 7 c + p) mod 256.
  auto records = [](int n, int first_label) {
    std::string s;
    for (int r = 0; r < n; ++r) {
      s.push_back(static_cast<char>(first_label + r));
      for (int c = 0; c < 3; ++c)
        for (int p = 0; p < 1024; ++p) s.push_back(static_cast<char>((r + 7 * c + p) & 0xff));
    }
    return s;
  };
  const std::string sub = dir.path + "/cifar-10-batches-bin";
  fs::create_directory(sub);
  write_file_atomic(sub + "/test_batch.bin", records(3, 4));
  for (int i = 1; i <= 5; ++i) write_file_atomic(sub + "/data_batch_" + std::to_string(i) + ".bin", records(2, i));
  Dataset test = load_cifar10(dir.path, "test");
  EXPECT_EQ(test.n, 3);
  EXPECT_EQ(test.channels, 3);
  EXPECT_EQ(test.labels, (std::vector<std::int64_t>{4, 5, 6}));
  // image 2, y 1, x 3 (p = 35), channel 2: (2 + 14 + 35) = 51
  EXPECT_EQ(test.image(2)[(1 * 32 + 3) * 3 + 2], 51);
  Dataset train = load_cifar10(sub, "train");
  EXPECT_EQ(train.n, 10);
  EXPECT_EQ(train.labels[9], 6);  // batch 5 record 1

  write_file_atomic(sub + "/test_batch.bin", records(3, 4).substr(0, 3073 * 2 + 100));
  expect_io_error([&] { load_cifar10(dir.path, "test"); }, "not a positive multiple of 3073");
  write_file_atomic(sub + "/test_batch.bin", records(2, 9));
  expect_io_error([&] { load_cifar10(dir.path, "test"); }, "record 1 has label 10");
  fs::remove(sub + "/data_batch_3.bin");
  expect_io_error([&] { load_cifar10(dir.path, "train"); }, "data_batch_3.bin' does not exist");
}

TEST(ImageFolder, LabelsFromSortedClassFoldersAndSizeChecks) {
  TempDir dir;
  std::vector<std::uint8_t> px(6 * 5 * 3);
  auto put = [&](const std::string& rel, std::uint8_t v, int h = 6) {
    std::fill(px.begin(), px.end(), v);
    write_png(dir.path + "/" + rel, px.data(), h, 5, 3);
  };
  fs::create_directories(dir.path + "/zebra");
  fs::create_directories(dir.path + "/ant");
  put("zebra/b.png", 1);
  put("zebra/a.png", 2);
  put("ant/x.PNG", 3);
  write_file_atomic(dir.path + "/ant/notes.txt", std::string("ignored"));
  Dataset ds = load_image_folder(dir.path);
  EXPECT_EQ(ds.n, 3);
  EXPECT_EQ(ds.num_classes, 2);
  EXPECT_EQ(ds.class_names, (std::vector<std::string>{"ant", "zebra"}));
  EXPECT_EQ(ds.labels, (std::vector<std::int64_t>{0, 1, 1}));
  EXPECT_EQ(ds.image(0)[0], 3);
  EXPECT_EQ(ds.image(1)[0], 2);  // zebra/a.png before zebra/b.png
  EXPECT_EQ(ds.height, 6);
  EXPECT_EQ(ds.channels, 3);

  put("zebra/c.png", 4, 4);
  expect_io_error([&] { load_image_folder(dir.path); }, "zebra/c.png' is 4x5x3");
  fs::remove(dir.path + "/zebra/c.png");
  put("loose.png", 5);
  expect_io_error([&] { load_image_folder(dir.path); }, "loose .png files");
  fs::remove(dir.path + "/loose.png");
  fs::create_directories(dir.path + "/empty");
  expect_io_error([&] { load_image_folder(dir.path); }, "empty' holds no .png files");
  expect_io_error([&] { load_image_folder(dir.path + "/nope"); }, "does not exist");
  Dataset flat = load_image_folder(dir.path + "/zebra");
  EXPECT_EQ(flat.n, 2);
  EXPECT_FALSE(flat.has_labels());
}

TEST(Toy, GaussianMixtureIsDeterministicAndHasTheStatedModes) {
  PointDataset a = make_gaussian_mixture(4000, 7);
  PointDataset b = make_gaussian_mixture(4000, 7);
  PointDataset c = make_gaussian_mixture(4000, 8);
  EXPECT_EQ(a.points, b.points);
  EXPECT_NE(a.points, c.points);
  ASSERT_EQ(a.centres.size(), 8u);
  EXPECT_NEAR(a.centres[2][0], 0.0, 1e-12);
  EXPECT_NEAR(a.centres[2][1], 2.0, 1e-12);
  // Per mode: about n/8 points, mean at the centre, spread stddev.
  for (int k = 0; k < 8; ++k) {
    double count = 0, mean[2] = {0, 0}, sq = 0;
    for (std::int64_t i = 0; i < a.n; ++i)
      if (a.labels[i] == k) {
        count += 1;
        for (int d = 0; d < 2; ++d) {
          double off = a.points[2 * i + d] - a.centres[k][d];
          mean[d] += off;
          sq += off * off;
        }
      }
    EXPECT_NEAR(count, 500, 100);
    EXPECT_NEAR(mean[0] / count, 0, 0.01);
    EXPECT_NEAR(mean[1] / count, 0, 0.01);
    EXPECT_NEAR(std::sqrt(sq / (2 * count)), a.stddev, 0.005);
  }
}

TEST(Toy, ShapesAreDeterministicNonEmptyAndMatchTheirClass) {
  Dataset a = make_toy_shapes(200, 3, 16);
  Dataset b = make_toy_shapes(200, 3, 16);
  EXPECT_EQ(a.images, b.images);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_NO_THROW(a.validate());
  std::vector<int> seen(4, 0);
  for (std::int64_t i = 0; i < a.n; ++i) {
    ++seen[a.labels[i]];
    // Bounding box of the lit pixels.
    int y0 = 99, y1 = -1, x0 = 99, x1 = -1, lit = 0;
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x)
        if (a.image(i)[y * 16 + x]) {
          ++lit;
          y0 = std::min(y0, y), y1 = std::max(y1, y), x0 = std::min(x0, x), x1 = std::max(x1, x);
        }
    ASSERT_GT(lit, 0) << "image " << i;
    const int hgt = y1 - y0 + 1, wid = x1 - x0 + 1;
    if (a.labels[i] == 2) EXPECT_GT(wid, hgt) << "horizontal bar " << i;
    if (a.labels[i] == 3) EXPECT_GT(hgt, wid) << "vertical bar " << i;
    if (a.labels[i] == 0) EXPECT_EQ(lit, hgt * wid) << "a square fills its box " << i;
    if (a.labels[i] == 1) EXPECT_LT(lit, hgt * wid) << "a disc does not fill its box " << i;
  }
  for (int s : seen) EXPECT_GT(s, 25);
  Dataset small = make_toy_shapes(10, 1, 8);
  EXPECT_EQ(small.height, 8);
}

TEST(PadTo, CentresWithZerosAndRejectsShrinking) {
  Dataset ds;
  ds.name = "t";
  ds.n = 1;
  ds.height = 1;
  ds.width = 2;
  ds.channels = 1;
  ds.images = {7, 9};
  Dataset p = pad_to(ds, 4);
  EXPECT_EQ(p.images, (std::vector<std::uint8_t>{0, 0, 0, 0,  //
                                                 0, 7, 9, 0,  //
                                                 0, 0, 0, 0,  //
                                                 0, 0, 0, 0}));
  EXPECT_THROW(pad_to(ds, 1), ValueError);
}

}  // namespace
}  // namespace ddpm
