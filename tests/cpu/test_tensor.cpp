// Tensor basics: factories, shapes, views, conversions, devices, and their error messages.
#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/tensor.h"

namespace ddpm {
namespace {

TEST(Tensor, FactoriesShapesAndValues) {
  Tensor z = Tensor::zeros({2, 3, 4, 5});
  EXPECT_EQ(z.numel(), 120);
  EXPECT_EQ(z.dim(-1), 5);
  EXPECT_EQ(z.dtype(), DType::f32);
  EXPECT_TRUE(z.device().is_cpu());
  for (float v : z.to_vector()) EXPECT_EQ(v, 0.f);
  Tensor f = Tensor::full({3}, 2.5, DType::f64);
  EXPECT_EQ(f.to_double_vector(), (std::vector<double>{2.5, 2.5, 2.5}));
  EXPECT_EQ(Tensor::scalar(4.0).item(), 4.0);
  EXPECT_EQ(Tensor::scalar(4.0).ndim(), 0);
  EXPECT_EQ(shape_str({2, 3}), "[2, 3]");
  EXPECT_EQ(z.describe(), "f32[2, 3, 4, 5] on cpu");
}

TEST(Tensor, ReshapeSharesStorageAndInfersOneAxis) {
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor r = t.reshape({3, -1});
  EXPECT_EQ(r.shape(), (Shape{3, 2}));
  r.data<float>()[0] = 9;
  EXPECT_EQ(t.to_vector()[0], 9.f);
  EXPECT_THROW(t.reshape({4, -1}), ValueError);
  EXPECT_THROW(t.reshape({-1, -1}), ValueError);
  EXPECT_THROW(t.reshape({7}), ValueError);
}

TEST(Tensor, CloneAndDtypeConversionAreDeepCopies) {
  Tensor t = Tensor::from_vector(std::vector<float>{1.5f, -2.f}, {2});
  Tensor c = t.clone();
  c.data<float>()[0] = 0;
  EXPECT_EQ(t.to_vector()[0], 1.5f);
  Tensor d = t.to(DType::f64);
  EXPECT_EQ(d.dtype(), DType::f64);
  EXPECT_EQ(d.to_double_vector(), (std::vector<double>{1.5, -2.0}));
  EXPECT_EQ(d.to(DType::f32).to_vector(), t.to_vector());
}

TEST(Tensor, ReadingWithTheWrongTypeThrows) {
  Tensor t = Tensor::zeros({2});
  EXPECT_THROW(t.data<double>(), ValueError);
  EXPECT_THROW(Tensor().shape(), ValueError);
  EXPECT_THROW(Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}), ValueError);
  EXPECT_THROW(Tensor::zeros({2, -1}), ValueError);
}

TEST(Tensor, HalfTypesAreRepresentable) {
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::f16), 2u);
  Tensor h = Tensor::empty({4, 4}, DType::bf16);
  EXPECT_EQ(h.nbytes(), 32u);
  EXPECT_STREQ(dtype_name(h.dtype()), "bf16");
}

TEST(Device, ParsingAndTheNoGpuPath) {
  EXPECT_TRUE(parse_device("cpu").is_cpu());
  EXPECT_THROW(parse_device("tpu"), ValueError);
  EXPECT_THROW(parse_device("cuda:x"), ValueError);
  if (!cuda_available()) {
    EXPECT_TRUE(parse_device("auto").is_cpu());
    EXPECT_FALSE(cuda_unavailable_reason().empty());
    try {
      parse_device("cuda");
      FAIL() << "expected an error";
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("no CUDA device is usable"), std::string::npos) << e.what();
    }
  } else {
    EXPECT_TRUE(parse_device("auto").is_cuda());
    EXPECT_TRUE(parse_device("cuda:0").is_cuda());
  }
}

}  // namespace
}  // namespace ddpm
