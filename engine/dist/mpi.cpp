// engine/dist/mpi.cpp: MpiSession and the MPI communicator (see mpi.h).
#include "engine/dist/mpi.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/dist/communicator.h"
#include "engine/dist/nccl.h"
#include "engine/error.h"

#if DDPM_HAS_MPI
// The C API only (the deprecated C++ bindings would need libmpi_cxx).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif
#if DDPM_HAVE_CUDA
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#endif

namespace ddpm::dist {

bool mpi_compiled() { return DDPM_HAS_MPI != 0; }

namespace {

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

#if DDPM_HAS_MPI
// The first of the launchers' local-rank variables that is set, or -1.
int local_rank_from_variables() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    const char* v = std::getenv(name);
    if (v != nullptr && *v != '\0') return std::atoi(v);
  }
  return -1;
}
#endif

}  // namespace

bool MpiSession::launched_by_mpi_launcher() {
  return env_set("OMPI_COMM_WORLD_SIZE") || env_set("PMIX_RANK") || env_set("PMI_RANK");
}

#if DDPM_HAS_MPI

// Every MPI call of this file: on failure an Error with MPI's own description. (The
// communicator's MPI_Comm uses MPI_ERRORS_RETURN, so failures come back as codes.)
#define DDPM_MPI_CHECK(expr)                                                             \
  do {                                                                                   \
    int ddpm_mpi_rc_ = (expr);                                                           \
    if (ddpm_mpi_rc_ != MPI_SUCCESS) {                                                   \
      char ddpm_mpi_msg_[MPI_MAX_ERROR_STRING];                                          \
      int ddpm_mpi_len_ = 0;                                                             \
      MPI_Error_string(ddpm_mpi_rc_, ddpm_mpi_msg_, &ddpm_mpi_len_);                     \
      DDPM_THROW(::ddpm::Error, "MPI call `" #expr "` failed: "                          \
                                    << std::string(ddpm_mpi_msg_, ddpm_mpi_len_));        \
    }                                                                                    \
  } while (0)

bool MpiSession::initialized() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init != 0 && fin == 0;
}

int MpiSession::world_size_of_world() {
  if (!initialized()) return 1;
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

MpiSession::MpiSession(int& argc, char**& argv, bool always) {
  if (!initialized() && (always || launched_by_mpi_launcher())) {
    int provided = 0;
    DDPM_MPI_CHECK(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided));
    owns_ = true;
  }
  if (!initialized()) return;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_);
  local_rank_ = local_rank_from_variables();
  if (local_rank_ < 0) {  // no launcher variable: rank among the processes sharing this node
    MPI_Comm node;
    DDPM_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_free(&node);
  }
}

MpiSession::~MpiSession() {
  if (owns_ && initialized()) MPI_Finalize();
}

void MpiSession::abort(int code) const {
  std::fflush(stdout);
  std::fflush(stderr);
  if (initialized()) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

namespace {

MPI_Datatype mpi_type(DType dtype) { return dtype == DType::f64 ? MPI_DOUBLE : MPI_FLOAT; }

// MPI counts are int: larger buffers go in pieces of at most 2^30 elements.
constexpr std::int64_t kMaxPiece = std::int64_t{1} << 30;

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(Device device, bool use_nccl) : device_(device) {
    DDPM_CHECK_AS(MpiSession::initialized(), Error, "the MPI communicator needs MPI to be initialised (MpiSession)");
    DDPM_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
    DDPM_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    DDPM_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    DDPM_MPI_CHECK(MPI_Comm_size(comm_, &world_));
    if (device.is_cuda() && use_nccl && nccl_compiled()) {
      try {
        // NCCL's bootstrap: rank 0 makes the unique id, MPI hands it to everyone, then every
        // rank joins the clique on its own GPU.
        std::vector<char> id(NcclComm::kUniqueIdBytes);
        if (rank_ == 0) id = NcclComm::unique_id();
        DDPM_MPI_CHECK(MPI_Bcast(id.data(), static_cast<int>(id.size()), MPI_BYTE, 0, comm_));
        nccl_ = std::make_unique<NcclComm>(id, world_, rank_, device.index);
      } catch (...) {
        MPI_Comm_free(&comm_);  // no destructor runs for a constructor that throws
        throw;
      }
    }
  }
  ~MpiCommunicator() override {
    nccl_.reset();  // NCCL first: its communicator was bootstrapped over this one
    if (MpiSession::initialized()) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string describe() const override {
    const std::string ranks = "MPI, " + std::to_string(world_) + " ranks";
    if (nccl_) return ranks + ", CUDA buffers over NCCL";
    return device_.is_cuda() ? ranks + ", CUDA buffers staged through the host" : ranks;
  }

  void all_reduce_sum(void* data, std::int64_t count, DType dtype, Device device) override {
    check_reduce_args("all_reduce_sum", count, dtype);
    if (count == 0) return;
    if (device.is_cuda()) {
      if (nccl_) return nccl_->all_reduce_sum(data, count, dtype);
      std::vector<unsigned char> host(static_cast<std::size_t>(count) * dtype_size(dtype));
      copy_device_to_host(host.data(), data, host.size());
      host_all_reduce(host.data(), count, dtype);
      copy_host_to_device(data, host.data(), host.size());
      return;
    }
    host_all_reduce(data, count, dtype);
  }

  void broadcast_bytes(void* data, std::size_t bytes, int root, Device device) override {
    check_root("broadcast", root, world_);
    if (bytes == 0) return;
    if (device.is_cuda()) {
      if (nccl_) return nccl_->broadcast(data, bytes, root);
      std::vector<unsigned char> host(bytes);
      if (rank_ == root) copy_device_to_host(host.data(), data, bytes);
      host_broadcast(host.data(), bytes, root);
      if (rank_ != root) copy_host_to_device(data, host.data(), bytes);
      return;
    }
    host_broadcast(data, bytes, root);
  }

  void barrier() override { DDPM_MPI_CHECK(MPI_Barrier(comm_)); }

  using Communicator::all_reduce_sum;
  using Communicator::broadcast;

 private:
  void host_all_reduce(void* data, std::int64_t count, DType dtype) {
    char* p = static_cast<char*>(data);
    for (std::int64_t done = 0; done < count;) {
      const std::int64_t piece = std::min(kMaxPiece, count - done);
      DDPM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p + done * static_cast<std::int64_t>(dtype_size(dtype)),
                                   static_cast<int>(piece), mpi_type(dtype), MPI_SUM, comm_));
      done += piece;
    }
  }
  void host_broadcast(void* data, std::size_t bytes, int root) {
    char* p = static_cast<char*>(data);
    for (std::size_t done = 0; done < bytes;) {
      const std::size_t piece = std::min<std::size_t>(static_cast<std::size_t>(kMaxPiece), bytes - done);
      DDPM_MPI_CHECK(MPI_Bcast(p + done, static_cast<int>(piece), MPI_BYTE, root, comm_));
      done += piece;
    }
  }
  // Host staging for CUDA buffers when NCCL is not used: ordered after the engine's stream.
  static void copy_device_to_host(void* host, const void* device, std::size_t bytes) {
#if DDPM_HAVE_CUDA
    DDPM_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, cuda::stream()));
    DDPM_CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
#else
    (void)host, (void)device, (void)bytes;
    DDPM_THROW(Error, "a CUDA buffer was given to the MPI communicator of a build without CUDA");
#endif
  }
  static void copy_host_to_device(void* device, const void* host, std::size_t bytes) {
#if DDPM_HAVE_CUDA
    DDPM_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, cuda::stream()));
    DDPM_CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));  // the host buffer dies after this
#else
    (void)host, (void)device, (void)bytes;
    DDPM_THROW(Error, "a CUDA buffer was given to the MPI communicator of a build without CUDA");
#endif
  }

  Device device_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, world_ = 1;
  std::unique_ptr<NcclComm> nccl_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(Device device, bool use_nccl) {
  return std::make_unique<MpiCommunicator>(device, use_nccl);
}

#else  // !DDPM_HAS_MPI: world 1 always

bool MpiSession::initialized() { return false; }
int MpiSession::world_size_of_world() { return 1; }
MpiSession::MpiSession(int&, char**&, bool) {}
MpiSession::~MpiSession() = default;
void MpiSession::abort(int code) const {
  std::fflush(stdout);
  std::fflush(stderr);
  std::exit(code);
}

std::unique_ptr<Communicator> make_mpi_communicator(Device, bool) {
  DDPM_THROW(Error, "this build has no MPI (install libopenmpi-dev and reconfigure: scripts/setup.sh)");
}

#endif

}  // namespace ddpm::dist
