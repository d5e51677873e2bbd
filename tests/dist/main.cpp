// tests/dist/main.cpp: the dist tests' main, run by ctest as `mpiexec -n 2 dist_tests`.
//
// MPI is initialised for the whole test program (an MpiSession that always initialises, so a
// plain ./dist_tests runs as world 1 and the tests that need two ranks skip). Rank 0 prints
// GoogleTest's usual output; the other ranks print only their failed assertions, prefixed
// with their rank, and every rank's exit status reports its own failures to mpiexec.
#include <cstdio>

#include <gtest/gtest.h>

#include "engine/dist/mpi.h"

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                 r.summary());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  ddpm::dist::MpiSession mpi(argc, argv, /*always=*/true);
  ::testing::InitGoogleTest(&argc, argv);
  if (mpi.rank() > 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(mpi.rank()));
  }
  return RUN_ALL_TESTS();
}
