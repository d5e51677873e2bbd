// ddpm-train --data: spec parsing and loading errors.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/error.h"
#include "models/run/data_spec.h"

using namespace ddpm;
using run::DataSpec;

TEST(DataSpec, ParsesEveryForm) {
  EXPECT_EQ(run::parse_data_spec("fashion-mnist").kind, DataSpec::Kind::fashion_mnist);
  EXPECT_TRUE(run::parse_data_spec("fashion-mnist").path.empty());
  EXPECT_EQ(run::parse_data_spec("fashion-mnist:/d").path, "/d");
  DataSpec idx = run::parse_data_spec("idx:/a/img.gz,/a/lab.gz");
  EXPECT_EQ(idx.kind, DataSpec::Kind::idx);
  EXPECT_EQ(idx.path, "/a/img.gz");
  EXPECT_EQ(idx.labels_path, "/a/lab.gz");
  EXPECT_TRUE(run::parse_data_spec("idx:/a/img").labels_path.empty());
  EXPECT_EQ(run::parse_data_spec("cifar10:/c").kind, DataSpec::Kind::cifar10);
  EXPECT_EQ(run::parse_data_spec("folder:/f").path, "/f");
  EXPECT_EQ(run::parse_data_spec("toy").kind, DataSpec::Kind::toy);
}

TEST(DataSpec, BadSpecsAreValueErrors) {
  for (const char* bad : {"", "mnist", "idx:", "idx:a,b,c", "idx:a,", "idx:,b", "cifar10:", "folder:", "toy:3",
                          "fashion-mnist:"})
    EXPECT_THROW(run::parse_data_spec(bad), ValueError) << bad;
}

TEST(DataSpec, MissingFilesAreIoErrorsNamingThem) {
  run::DataOptions opt;
  try {
    run::load_data(run::parse_data_spec("idx:/nonexistent/images.gz"), opt);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/images.gz"), std::string::npos) << e.what();
  }
  EXPECT_THROW(run::load_data(run::parse_data_spec("fashion-mnist:/nonexistent"), opt), IoError);
  EXPECT_THROW(run::load_data(run::parse_data_spec("cifar10:/nonexistent"), opt), IoError);
  EXPECT_THROW(run::load_data(run::parse_data_spec("folder:/nonexistent"), opt), IoError);
}

TEST(DataSpec, ToyDataAndPadding) {
  run::DataOptions opt;
  opt.toy_count = 8;
  Dataset d = run::load_data(run::parse_data_spec("toy"), opt);
  EXPECT_EQ(d.n, 8);
  EXPECT_EQ(d.height, 16);
  EXPECT_EQ(d.num_classes, 4);
  opt.pad_to_32 = true;
  Dataset p = run::load_data(run::parse_data_spec("toy"), opt);
  EXPECT_EQ(p.height, 32);
  EXPECT_EQ(p.width, 32);
}
