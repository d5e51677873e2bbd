// engine/dist/nccl.h: an NCCL communicator for CUDA buffers (ARCHITECTURE decision 12).
//
// One rank per GPU. Collectives run on the engine's CUDA stream (kernels/cuda/context.h), so
// they are ordered with the backward pass before them and the optimizer after them without
// any host synchronisation: ncclAllReduce of the gradient slab is one more op on the stream.
//
// Bootstrap (the usual NCCL recipe): rank 0 calls ncclGetUniqueId, the id's bytes travel to
// every rank over MPI (engine/dist/mpi.cpp), every rank calls ncclCommInitRank with its
// device current. single_device() is ncclCommInitAll over one GPU: world 1, for tests.
//
// Every NCCL call is checked (DDPM_NCCL_CHECK in nccl.cpp): a failure throws CudaError with
// NCCL's error string and its last error message. Built without CUDA, every function
// throws an Error saying so (nccl_compiled() is false).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/dtype.h"

struct ncclComm;  // NCCL's opaque communicator (ncclComm_t is ncclComm*)

namespace ddpm::dist {

bool nccl_compiled();

class NcclComm {
 public:
  static constexpr std::size_t kUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES

  // A fresh ncclUniqueId as bytes (made once, by rank 0).
  static std::vector<char> unique_id();
  // Joins the clique of `world` ranks identified by id, as `rank`, on CUDA device `device`
  // (which must be this process's current device).
  NcclComm(const std::vector<char>& id, int world, int rank, int device);
  // World 1 on one device (ncclCommInitAll with a single device).
  static std::unique_ptr<NcclComm> single_device(int device);
  ~NcclComm();  // ncclCommDestroy; logs, never throws
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_; }

  // In place, on the engine's stream: data[i] <- sum over ranks (f32 or f64).
  void all_reduce_sum(void* data, std::int64_t count, DType dtype);
  // Root's bytes to every rank, in place, on the engine's stream.
  void broadcast(void* data, std::size_t bytes, int root);

 private:
  NcclComm() = default;
  [[maybe_unused]] ncclComm* comm_ = nullptr;  // unused in builds without NCCL (clang warns)
  int rank_ = 0, world_ = 1;
};

}  // namespace ddpm::dist
