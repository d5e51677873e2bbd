// apps/ddpm_train.cpp: ddpm-train, training a diffusion model into a run folder.
//
//   ddpm-train --data fashion-mnist --preset auto --out runs/fm
//   ddpm-train --out runs/fm --resume latest --steps 4000
//   ddpm-train --autoencoder ae/ --data fashion-mnist --pad-to-32 --out runs/latent   (latent diffusion)
//   ddpm-train --data fashion-mnist --objective edm --out runs/fm-edm   (EDM preconditioning)
//   ddpm-train --init-from runs/fm --data folder:my_images --out runs/fm-mine   (fine-tuning, finetune.h)
//   mpirun -np 2 ddpm-train --device cuda --batch-size 128 --out runs/fm2   (data parallel)
//
// A thin shell: flags (models/run/train_flags.h), presets (models/run/presets.h) and the run
// itself (models/run/train_run.h) live in the library.
//
// Data parallel: under mpirun / mpiexec / srun the MpiSession below initialises MPI (and
// finalises it when main returns); each rank then takes GPU local_rank (modulo the GPUs it
// sees) for --device cuda or auto, and the ranks train one run together (train_run.h says who
// writes what). An error on any rank is printed by that rank, then MPI_Abort ends every rank
// with the same exit status, so no rank waits forever in a collective.
#include <cstdio>
#include <string>

#include "apps/common/cli.h"
#include "engine/device.h"
#include "engine/dist/communicator.h"
#include "engine/dist/mpi.h"
#include "models/run/edm_options.h"
#include "models/run/finetune.h"
#include "models/run/train_flags.h"
#include "models/run/train_run.h"

namespace {

// --device for this rank: with world > 1, "cuda" and "auto" (when CUDA is usable) become
// cuda:<local rank mod the visible GPUs>; "cpu" and an explicit "cuda:N" stay as given.
std::string rank_device(const std::string& spec, const ddpm::dist::MpiSession& mpi) {
  if (mpi.world_size() <= 1) return spec;
  const bool wants_cuda = spec == "cuda" || (spec == "auto" && ddpm::cuda_available());
  if (!wants_cuda || ddpm::cuda_device_count() == 0) return spec;  // parse_device says why CUDA is unusable
  return "cuda:" + std::to_string(mpi.local_rank() % ddpm::cuda_device_count());
}

}  // namespace

int main(int argc, char** argv) {
  ddpm::dist::MpiSession mpi(argc, argv);  // MPI_Init under a launcher; MPI_Finalize on return
  CLI::App app{"Train a DDPM on an image dataset; writes a run folder with checkpoints, samples and metrics.",
               "ddpm-train"};
  if (mpi.world_size() > 1 && mpi.rank() > 0) app.name("ddpm-train (rank " + std::to_string(mpi.rank()) + ")");
  ddpm::cli::CommonFlags common;
  common.conv_algo = "heuristic";  // the same cuDNN algorithms in every process: resume stays bit-identical
  ddpm::cli::add_common_flags(app, common);
  ddpm::run::TrainOptions options;
  ddpm::run::add_train_flags(app, options);
  const int rc = ddpm::cli::run(app, argc, argv, [&]() {
    auto resolve = [&]() {
      common.device = rank_device(common.device, mpi);
      options.device = ddpm::cli::resolve_device(common);
      options.seed = common.seed;
    };
    resolve();
    ddpm::run::apply_preset_under_flags(app, argc, argv, options, options.device);
    ddpm::run::note_objective_flags(app, options);  // DDPM-only flags given with --objective edm are refused
    ddpm::run::note_init_from_flags(app, options);  // model and diffusion flags given with --init-from are refused
    resolve();  // the preset re-parsed argv
    const std::unique_ptr<ddpm::dist::Communicator> comm = ddpm::dist::Communicator::from_environment(options.device);
    options.comm = comm.get();
    const ddpm::run::TrainResult r = ddpm::run::train_run(options);
    if (comm->is_root())
      std::printf("run folder: %s\nlast checkpoint: %s\nsamples: %s/samples\nmetrics: %s/metrics.csv, loss curve %s/loss.png\n",
                  r.run_dir.c_str(), r.last_checkpoint.c_str(), r.run_dir.c_str(), r.run_dir.c_str(), r.run_dir.c_str());
    // Stopped by Ctrl-C or SIGTERM after a checkpoint: the shell's status for that signal.
    return r.stopped_by_signal != 0 ? 128 + r.stopped_by_signal : 0;
  });
  // Errors end every rank (no rank may wait alone in a collective); a stop signal already
  // stopped them all after the same step.
  if (rc != 0 && rc < 128 && mpi.world_size() > 1) mpi.abort(rc);
  return rc;
}
