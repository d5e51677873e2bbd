// The communicator under mpiexec: all_reduce_sum against the closed-form sum over ranks
// (f32 and f64, a count that is not a multiple of anything), broadcast from a non-zero root,
// strings, the single-process backend, and argument checks.
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/dist/communicator.h"
#include "engine/dist/mpi.h"
#include "engine/error.h"

namespace ddpm::dist {
namespace {

std::unique_ptr<Communicator> world() { return Communicator::from_environment(Device::cpu()); }

// Rank r holds (r + 1) * (i + 1) + 0.25: the sum over W ranks is (i + 1) W (W + 1) / 2 + W / 4,
// exact in both dtypes for these sizes.
template <typename T> void check_sum(Communicator& c, std::int64_t count) {
  const int W = c.world_size(), r = c.rank();
  std::vector<T> v(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) v[static_cast<std::size_t>(i)] = static_cast<T>((r + 1) * (i + 1)) + T(0.25);
  c.all_reduce_sum(v.data(), count, Device::cpu());
  for (std::int64_t i = 0; i < count; ++i) {
    const double expected = static_cast<double>(i + 1) * W * (W + 1) / 2.0 + W * 0.25;
    ASSERT_EQ(static_cast<double>(v[static_cast<std::size_t>(i)]), expected) << "element " << i << " on rank " << r;
  }
}

TEST(Communicator, FromEnvironmentSeesTheLauncher) {
  auto c = world();
  EXPECT_EQ(c->world_size(), MpiSession::world_size_of_world());
  EXPECT_GE(c->rank(), 0);
  EXPECT_LT(c->rank(), c->world_size());
  if (c->world_size() > 1) EXPECT_NE(c->describe().find("MPI"), std::string::npos) << c->describe();
}

TEST(Communicator, AllReduceSumsOverRanks) {
  auto c = world();
  check_sum<float>(*c, 1001);
  check_sum<double>(*c, 7);
  // A tensor in one call (what the trainer does with the gradient slab).
  Tensor t = Tensor::full({3, 5}, c->rank() + 1.0, DType::f32);
  c->all_reduce_sum(t);
  const double W = c->world_size();
  for (float x : t.to_vector()) EXPECT_EQ(x, W * (W + 1) / 2);
  float none = 5.0f;
  c->all_reduce_sum(&none, 0, Device::cpu());  // an empty sum leaves memory alone
  EXPECT_EQ(none, 5.0f);
}

TEST(Communicator, BroadcastCopiesTheRootsBytes) {
  auto c = world();
  const int root = c->world_size() - 1;  // not rank 0 when there are two ranks
  std::vector<float> v(37);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(100 * c->rank() + static_cast<int>(i));
  c->broadcast(v.data(), static_cast<std::int64_t>(v.size()), root, Device::cpu());
  for (std::size_t i = 0; i < v.size(); ++i) EXPECT_EQ(v[i], static_cast<float>(100 * root + static_cast<int>(i)));
  const std::string s = c->broadcast_string(c->rank() == root ? "from the root, " + std::to_string(root) : "x", root);
  EXPECT_EQ(s, "from the root, " + std::to_string(root));
  EXPECT_EQ(c->broadcast_string("", 0), "");
  c->barrier();
}

TEST(Communicator, SingleProcessIsTheIdentity) {
  auto c = Communicator::single_process();
  EXPECT_EQ(c->world_size(), 1);
  EXPECT_EQ(c->rank(), 0);
  std::vector<double> v{1.5, -2.0};
  c->all_reduce_sum(v.data(), 2, Device::cpu());
  EXPECT_EQ(v, (std::vector<double>{1.5, -2.0}));
  EXPECT_EQ(c->broadcast_string("abc", 0), "abc");
}

TEST(Communicator, RejectsBadArguments) {
  std::vector<std::unique_ptr<Communicator>> comms;
  comms.push_back(world());
  comms.push_back(Communicator::single_process());
  for (auto& c : comms) {
    float x = 0;
    EXPECT_THROW(c->all_reduce_sum(&x, -1, Device::cpu()), ValueError);
    EXPECT_THROW(c->all_reduce_sum(&x, 1, DType::bf16, Device::cpu()), ValueError);
    EXPECT_THROW(c->broadcast(&x, 1, c->world_size(), Device::cpu()), ValueError);
  }
}

}  // namespace
}  // namespace ddpm::dist
