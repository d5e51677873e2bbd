// engine/dist/communicator.cpp: the backend-independent parts of Communicator and the
// single-process backend.
#include "engine/dist/communicator.h"

#include <vector>

#include "engine/dist/mpi.h"
#include "engine/error.h"

namespace ddpm::dist {

void check_reduce_args(const char* where, std::int64_t count, DType dtype) {
  DDPM_CHECK(count >= 0, where << ": the element count must be >= 0, got " << count);
  DDPM_CHECK(dtype == DType::f32 || dtype == DType::f64,
             where << ": sums are over f32 or f64 elements, got " << dtype_name(dtype));
}

void check_root(const char* where, int root, int world_size) {
  DDPM_CHECK(root >= 0 && root < world_size,
             where << ": root rank " << root << " is outside the world of " << world_size << " ranks");
}

void Communicator::all_reduce_sum(const Tensor& t) {
  DDPM_CHECK(t.defined(), "Communicator::all_reduce_sum: the tensor is undefined");
  all_reduce_sum(t.raw_data(), t.numel(), t.dtype(), t.device());
}

void Communicator::broadcast(const Tensor& t, int root) {
  DDPM_CHECK(t.defined(), "Communicator::broadcast: the tensor is undefined");
  broadcast_bytes(t.raw_data(), t.nbytes(), root, t.device());
}

std::string Communicator::broadcast_string(const std::string& s, int root) {
  // The length first, so the other ranks can size their buffers, then the characters.
  std::uint64_t length = s.size();
  broadcast_bytes(&length, sizeof length, root, Device::cpu());
  std::string out = s;
  out.resize(static_cast<std::size_t>(length));
  if (length > 0) broadcast_bytes(out.data(), out.size(), root, Device::cpu());
  return out;
}

std::unique_ptr<Communicator> Communicator::single_process() { return std::make_unique<SingleProcessCommunicator>(); }

std::unique_ptr<Communicator> Communicator::from_environment(Device device) {
  if (!MpiSession::initialized() || MpiSession::world_size_of_world() <= 1) return single_process();
  return make_mpi_communicator(device);
}

void SingleProcessCommunicator::all_reduce_sum(void*, std::int64_t count, DType dtype, Device) {
  check_reduce_args("all_reduce_sum", count, dtype);
}

void SingleProcessCommunicator::broadcast_bytes(void*, std::size_t, int root, Device) { check_root("broadcast", root, 1); }

}  // namespace ddpm::dist
