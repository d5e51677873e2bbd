// tests/fuzz/fuzz_model_config.cpp: the JSON configs open_model reads (models/run/model_source.h).
//
// The first byte picks the file that gets the rest of the bytes:
//   even: config.json beside a model file. open_model parses it as a run config
//         ({"model", "diffusion"}: models/unet/model_io config_from_json, diffusion_from_json)
//         or a bare UNet config (ours, or diffusers' UNet2DModel: config_from_diffusers). The
//         weights file beside it is empty, so an accepted config ends in the safetensors
//         reader's refusal before a network is built: a config naming a legitimately huge
//         network is not a finding, a crash while parsing it is.
//   odd:  scheduler_config.json of a valid diffusers folder (a tiny UNet2DModel written once
//         by save_diffusers_folder): diffusion_from_diffusers_scheduler on the parsed JSON.
#include <filesystem>

#include "engine/rng.h"
#include "models/run/model_source.h"
#include "models/unet/model_io.h"
#include "tests/fuzz/fuzz_runs.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

namespace fs = std::filesystem;

// A diffusers folder holding a 2-level UNet of 8 channels on 8x8 images (a few kB).
std::string tiny_diffusers_folder() {
  const std::string dir = ddpm::fuzz::scratch_dir() + "/diffusers";
  ddpm::Generator gen(0);
  ddpm::unet::UNet net(ddpm::fuzz::tiny_unet_config(), gen, ddpm::Device::cpu());
  ddpm::unet::save_diffusers_folder(net, dir);
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool scheduler = (data[0] & 1) != 0;
  if (scheduler) {
    static const std::string dir = tiny_diffusers_folder();
    ddpm::fuzz::write_scratch("diffusers/scheduler_config.json", data + 1, size - 1);
    ddpm::fuzz::expect_accept_or_refuse([&] { ddpm::run::open_model(dir, ddpm::Device::cpu()); });
  } else {
    static const std::string dir = [] {
      const std::string d = ddpm::fuzz::scratch_dir() + "/model_file";
      fs::create_directories(d);
      return d;
    }();
    ddpm::fuzz::write_scratch("model_file/config.json", data + 1, size - 1);
    const std::string weights = ddpm::fuzz::write_scratch("model_file/model.safetensors", data, 0);
    ddpm::fuzz::expect_accept_or_refuse([&] { ddpm::run::open_model(weights, ddpm::Device::cpu()); });
  }
  return 0;
}
