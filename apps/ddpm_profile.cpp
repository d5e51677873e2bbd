// apps/ddpm_profile.cpp: ddpm-profile, one profiled training step and one profiled sampling
// step of a chosen UNet; a thin shell over models/run/profile_run.h.
//
// For Nsight Systems, every op is an NVTX range:  nsys profile --trace=cuda,nvtx ddpm-profile
#include <iostream>

#include "apps/common/cli.h"
#include "models/run/profile_run.h"

int main(int argc, char** argv) {
  CLI::App app{
      "ddpm-profile: profile one training step (forward, loss, backward, AdamW, EMA) and one sampling step "
      "(a no-grad forward) of a UNet; prints a per-op table (time, share, estimated FLOPs and bytes, achieved "
      "rates) and the kernel launches per step. Defaults: the DDPM CIFAR-10 network at batch 128 on CUDA, a "
      "small network at batch 4 on the CPU.",
      "ddpm-profile"};
  ddpm::cli::CommonFlags common;
  ddpm::run::ProfileFlags flags;
  ddpm::cli::add_common_flags(app, common);
  ddpm::run::add_profile_flags(app, flags);
  return ddpm::cli::run(app, argc, argv, [&] {
    ddpm::Device device = ddpm::cli::resolve_device(common);
    ddpm::run::note_profile_flags(app, flags);
    ddpm::run::profile_main(flags, device, common.seed, std::cout);
    return 0;
  });
}
