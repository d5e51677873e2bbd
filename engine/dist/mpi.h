// engine/dist/mpi.h: MPI's lifetime in a program, and the MPI backend of Communicator.
//
// MPI_Init and MPI_Finalize happen once per process, so they belong to one RAII object that
// the program (the app's main, the dist test binary) owns: MpiSession. It initialises MPI only
// when the process was started by an MPI launcher, recognised by the variables the
// launchers set:
//   OMPI_COMM_WORLD_SIZE      Open MPI's mpirun / mpiexec
//   PMIX_RANK                 PMIx launchers (srun --mpi=pmix, prterun)
//   PMI_RANK                  PMI-1/2 launchers (srun --mpi=pmi2, MPICH's hydra)
// so a plain `ddpm-train ...` never touches MPI and behaves exactly as before. Built without
// MPI (DDPM_HAS_MPI 0 in mpi.cpp, the only file that sees MPI) the session is always
// inactive and world 1.
//
// The local rank (which GPU a rank takes): OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID or
// SLURM_LOCALID when set, else the rank inside MPI_Comm_split_type(MPI_COMM_TYPE_SHARED),
// i.e. among the processes of this node.
#pragma once

#include <memory>

#include "engine/device.h"

namespace ddpm::dist {

class Communicator;

// True when this library was built with MPI (CMake found it).
bool mpi_compiled();

class MpiSession {
 public:
  // Initialises MPI (MPI_Init_thread, funneled: only the main thread calls MPI) when
  // launched by an MPI launcher, or always when `always` (the dist tests, which are only
  // ever run under mpiexec). No-op when MPI is already initialised or not compiled in.
  MpiSession(int& argc, char**& argv, bool always = false);
  // MPI_Finalize when this session initialised MPI.
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  bool active() const { return owns_; }
  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int local_rank() const { return local_rank_; }

  // Ends every process of the job with exit status `code` (MPI_Abort on MPI_COMM_WORLD),
  // so an error on one rank never leaves the others blocked in a collective. Without an
  // active MPI: std::exit(code). For programs, after they printed the error; never called
  // by library code.
  [[noreturn]] void abort(int code) const;

  static bool launched_by_mpi_launcher();
  // MPI initialised and not yet finalised (by anyone).
  static bool initialized();
  // MPI_COMM_WORLD's size when initialized(), else 1.
  static int world_size_of_world();

 private:
  bool owns_ = false;
  int rank_ = 0, world_ = 1, local_rank_ = 0;
};

// The MPI communicator over a duplicate of MPI_COMM_WORLD (its traffic never mixes with
// anyone else's). CUDA buffers on `device` go over NCCL when CUDA is compiled in (the
// ncclUniqueId is made by rank 0 and sent with MPI_Bcast), else they are staged through
// host memory. MPI must be initialised; an Error without MPI compiled in.
std::unique_ptr<Communicator> make_mpi_communicator(Device device, bool use_nccl = true);

}  // namespace ddpm::dist
