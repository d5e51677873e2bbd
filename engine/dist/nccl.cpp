// engine/dist/nccl.cpp: NcclComm (see nccl.h).
#include "engine/dist/nccl.h"

#include <cstdio>
#include <cstring>
#include <type_traits>

#include "engine/error.h"

#if DDPM_HAVE_CUDA
#include <dlfcn.h>
#include <nccl.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"

// NCCL is loaded when the first communicator is made (dlopen), not linked: libnccl is 200+
// MB, needed only by data-parallel CUDA runs, and absent from some machines that run
// everything else (the GPU machines receive prebuilt programs without it, scripts/
// gpu-pack.sh). Every call below goes through nccl(), the table of the functions we use,
// typed from nccl.h's own declarations.
namespace {
struct NcclApi {
  decltype(&ncclGetErrorString) GetErrorString;
  decltype(&ncclGetLastError) GetLastError;
  decltype(&ncclGetUniqueId) GetUniqueId;
  decltype(&ncclCommInitRank) CommInitRank;
  decltype(&ncclCommInitAll) CommInitAll;
  decltype(&ncclCommDestroy) CommDestroy;
  decltype(&ncclAllReduce) AllReduce;
  decltype(&ncclBroadcast) Broadcast;
};

const NcclApi& nccl() {
  static const NcclApi api = [] {
    void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    DDPM_CHECK_AS(lib != nullptr, ::ddpm::CudaError,
                  "NCCL could not be loaded (" << dlerror()
                                               << "); data-parallel CUDA training needs libnccl.so.2: put the folder "
                                                  "that holds it (the CUDA toolkit's lib/, or PyTorch's "
                                                  "nvidia/nccl/lib) on LD_LIBRARY_PATH");
    NcclApi a{};
    auto get = [&](auto& fn, const char* name) {
      void* sym = dlsym(lib, name);
      DDPM_CHECK_AS(sym != nullptr, ::ddpm::CudaError, "NCCL: libnccl.so.2 has no " << name);
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(sym);
    };
    get(a.GetErrorString, "ncclGetErrorString");
    get(a.GetLastError, "ncclGetLastError");
    get(a.GetUniqueId, "ncclGetUniqueId");
    get(a.CommInitRank, "ncclCommInitRank");
    get(a.CommInitAll, "ncclCommInitAll");
    get(a.CommDestroy, "ncclCommDestroy");
    get(a.AllReduce, "ncclAllReduce");
    get(a.Broadcast, "ncclBroadcast");
    return a;
  }();
  return api;
}
}  // namespace

// Every NCCL call, in the style of kernels/cuda/check.h: the failing expression, NCCL's name
// for the result and its last error message (the detail NCCL logs about the failure).
#define DDPM_NCCL_CHECK(expr, comm)                                                        \
  do {                                                                                     \
    ncclResult_t ddpm_nccl_rc_ = (expr);                                                   \
    if (ddpm_nccl_rc_ != ncclSuccess) {                                                    \
      const char* ddpm_nccl_last_ = nccl().GetLastError(comm);                               \
      DDPM_THROW(::ddpm::CudaError, "NCCL call `" #expr "` failed: "                       \
                                        << nccl().GetErrorString(ddpm_nccl_rc_)             \
                                        << (ddpm_nccl_last_ && *ddpm_nccl_last_ ? " (" : "") \
                                        << (ddpm_nccl_last_ ? ddpm_nccl_last_ : "")         \
                                        << (ddpm_nccl_last_ && *ddpm_nccl_last_ ? ")" : "")); \
    }                                                                                      \
  } while (0)
#endif

namespace ddpm::dist {

#if DDPM_HAVE_CUDA

static_assert(sizeof(ncclUniqueId) == NcclComm::kUniqueIdBytes, "NCCL_UNIQUE_ID_BYTES changed");

bool nccl_compiled() { return true; }

namespace {
void require_current_device(int device) {
  DDPM_CHECK(cuda::current_device() == device,
             "NcclComm: device " << device << " must be the current CUDA device (it is "
                                 << cuda::current_device() << "); select it first (cuda::set_device)");
}
}  // namespace

std::vector<char> NcclComm::unique_id() {
  ncclUniqueId id;
  DDPM_NCCL_CHECK(nccl().GetUniqueId(&id), nullptr);
  return std::vector<char>(id.internal, id.internal + sizeof id.internal);
}

NcclComm::NcclComm(const std::vector<char>& id, int world, int rank, int device) : rank_(rank), world_(world) {
  DDPM_CHECK(id.size() == kUniqueIdBytes,
             "NcclComm: the unique id has " << id.size() << " bytes, NCCL's has " << kUniqueIdBytes);
  DDPM_CHECK(world >= 1 && rank >= 0 && rank < world,
             "NcclComm: rank " << rank << " is outside a world of " << world << " ranks");
  require_current_device(device);
  ncclUniqueId uid;
  std::memcpy(uid.internal, id.data(), kUniqueIdBytes);
  DDPM_NCCL_CHECK(nccl().CommInitRank(&comm_, world, uid, rank), nullptr);
}

std::unique_ptr<NcclComm> NcclComm::single_device(int device) {
  require_current_device(device);
  std::unique_ptr<NcclComm> c(new NcclComm());
  DDPM_NCCL_CHECK(nccl().CommInitAll(&c->comm_, 1, &device), nullptr);
  return c;
}

NcclComm::~NcclComm() {
  if (comm_ == nullptr) return;
  const ncclResult_t rc = nccl().CommDestroy(comm_);
  if (rc != ncclSuccess) std::fprintf(stderr, "ddpm: ncclCommDestroy failed: %s\n", nccl().GetErrorString(rc));
}

void NcclComm::all_reduce_sum(void* data, std::int64_t count, DType dtype) {
  DDPM_CHECK(count >= 0 && (dtype == DType::f32 || dtype == DType::f64),
             "NcclComm::all_reduce_sum: needs count >= 0 (got " << count << ") and f32 or f64 (got "
                                                               << dtype_name(dtype) << ")");
  if (count == 0) return;
  const ncclDataType_t type = dtype == DType::f64 ? ncclFloat64 : ncclFloat32;
  DDPM_NCCL_CHECK(nccl().AllReduce(data, data, static_cast<std::size_t>(count), type, ncclSum, comm_, cuda::stream()),
                  comm_);
}

void NcclComm::broadcast(void* data, std::size_t bytes, int root) {
  DDPM_CHECK(root >= 0 && root < world_, "NcclComm::broadcast: root rank " << root << " is outside the world of "
                                                                         << world_ << " ranks");
  if (bytes == 0) return;
  DDPM_NCCL_CHECK(nccl().Broadcast(data, data, bytes, ncclUint8, root, comm_, cuda::stream()), comm_);
}

#else  // no CUDA: no NCCL

bool nccl_compiled() { return false; }

namespace {
[[noreturn]] void no_nccl() { DDPM_THROW(Error, "NCCL needs the CUDA backend, and this build has none"); }
}  // namespace

std::vector<char> NcclComm::unique_id() { no_nccl(); }
NcclComm::NcclComm(const std::vector<char>&, int, int, int) { no_nccl(); }
std::unique_ptr<NcclComm> NcclComm::single_device(int) { no_nccl(); }
NcclComm::~NcclComm() = default;
void NcclComm::all_reduce_sum(void*, std::int64_t, DType) { no_nccl(); }
void NcclComm::broadcast(void*, std::size_t, int) { no_nccl(); }

#endif

}  // namespace ddpm::dist
