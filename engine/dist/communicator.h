// engine/dist/communicator.h: the collective operations of data-parallel training
// (ARCHITECTURE decision 12), behind one interface with three backends:
//
//   single process   world 1; every collective is a no-op (the default everywhere)
//   MPI              CPU buffers through MPI_Allreduce / MPI_Bcast (engine/dist/mpi.h);
//                    CUDA buffers through NCCL when CUDA is compiled in, else staged
//                    through the host
//   NCCL             CUDA buffers only (engine/dist/nccl.h): ncclAllReduce on the engine's
//                    stream, bootstrapped by MPI (the ncclUniqueId is broadcast from rank 0)
//
// Nothing here is home-made communication: the sums and broadcasts are MPI's and NCCL's.
//
// Every collective must be called by every rank in the same order with the same sizes
// (MPI and NCCL semantics); a rank that skips one hangs the others. Sums are in place.
//
// The result of a sum is the same bits on every rank: NCCL's ring and tree reduce each
// chunk once and hand the result to everyone, and Open MPI's algorithms either do the same
// or combine the same pairs in a commutative way (a + b == b + a exactly in IEEE
// arithmetic). The data-parallel trainer relies on this to keep the weights identical on
// every rank; its test checks it bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/tensor.h"

namespace ddpm::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  bool is_root() const { return rank() == 0; }
  // One line for logs: "single process", "MPI, 2 ranks (gradients over NCCL)", ...
  virtual std::string describe() const = 0;

  // data[i] <- sum over ranks of data[i], for count elements of dtype (f32 or f64) that
  // live on `device` (host memory for the CPU, device memory of this process's GPU for CUDA).
  virtual void all_reduce_sum(void* data, std::int64_t count, DType dtype, Device device) = 0;
  void all_reduce_sum(float* data, std::int64_t count, Device device) {
    all_reduce_sum(data, count, DType::f32, device);
  }
  void all_reduce_sum(double* data, std::int64_t count, Device device) {
    all_reduce_sum(data, count, DType::f64, device);
  }
  // The whole tensor in place (tensors are dense): the gradient slab in one call.
  void all_reduce_sum(const Tensor& t);

  // Copies `bytes` bytes at data on rank `root` to data on every other rank.
  virtual void broadcast_bytes(void* data, std::size_t bytes, int root, Device device) = 0;
  void broadcast(float* data, std::int64_t count, int root, Device device) {
    broadcast_bytes(data, static_cast<std::size_t>(count) * sizeof(float), root, device);
  }
  // The whole tensor, e.g. the parameter slab at start.
  void broadcast(const Tensor& t, int root);
  // Root's string on every rank (its length first, then its bytes).
  std::string broadcast_string(const std::string& s, int root);

  // Returns when every rank has called it.
  virtual void barrier() = 0;

  // MPI when this process was started by a launcher (mpirun / mpiexec / srun) and MPI is
  // initialised with more than one rank (engine/dist/mpi.h: MpiSession does that), else a
  // single process. With a CUDA device and CUDA compiled in, CUDA buffers go over NCCL on
  // device.index, which must be the current device (the app picks it from the local rank).
  static std::unique_ptr<Communicator> from_environment(Device device);
  static std::unique_ptr<Communicator> single_process();
};

// World 1: sums and broadcasts leave the data as it is (a sum over one rank is the value).
class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string describe() const override { return "single process"; }
  void all_reduce_sum(void*, std::int64_t count, DType dtype, Device) override;
  void broadcast_bytes(void*, std::size_t, int root, Device) override;
  void barrier() override {}
  using Communicator::all_reduce_sum;
  using Communicator::broadcast;
};

// Checks shared by the backends (ValueError naming the call): f32/f64 only, count >= 0,
// root in [0, world).
void check_reduce_args(const char* where, std::int64_t count, DType dtype);
void check_root(const char* where, int root, int world_size);

}  // namespace ddpm::dist
