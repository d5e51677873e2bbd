// models/run/guided_distill.cpp: see guided_distill.h.
#include "models/run/guided_distill.h"

#include <cmath>
#include <sstream>

#include "engine/error.h"

namespace ddpm::run {

GuidedRange parse_guided_range(const std::string& spec) {
  GuidedRange r;
  const std::size_t comma = spec.find(',');
  bool ok = comma != std::string::npos;
  try {
    std::size_t used = 0;
    if (ok) {
      r.scale_min = std::stod(spec.substr(0, comma), &used);
      ok = used == comma;
      const std::string hi = spec.substr(comma + 1);
      r.scale_max = std::stod(hi, &used);
      ok = ok && used == hi.size();
    }
  } catch (const std::exception&) {
    ok = false;
  }
  DDPM_CHECK(ok && std::isfinite(r.scale_min) && std::isfinite(r.scale_max),
             "--guided " << spec << " is not a range S_MIN,S_MAX of guidance scales (e.g. 1,5)");
  DDPM_CHECK(r.scale_min >= 1, "--guided " << spec << ": S_MIN " << r.scale_min
                                           << " is below 1; a guidance scale s < 1 (w = s - 1 < 0) pushes away from "
                                              "the class, and s = 1 is plain conditional sampling");
  DDPM_CHECK(r.scale_min <= r.scale_max,
             "--guided " << spec << ": S_MIN " << r.scale_min << " is larger than S_MAX " << r.scale_max);
  return r;
}

std::vector<double> draw_guidance_weights(std::int64_t n, const GuidedRange& range, Generator& gen) {
  std::vector<double> w;
  for (double u : rand({n}, gen, Device::cpu(), DType::f64).to_double_vector())
    w.push_back(range.scale_min + u * (range.scale_max - range.scale_min) - 1.0);  // w = s - 1
  return w;
}

std::unique_ptr<unet::UNet> with_guidance_embedding(const unet::UNet& net, std::uint64_t seed) {
  unet::UNetConfig c = net.config();
  DDPM_CHECK(!c.guidance_embedding, "with_guidance_embedding: the network already has a guidance embedding");
  c.guidance_embedding = true;  // validate() refuses an unconditional net
  Generator gen(seed);
  auto out = std::make_unique<unet::UNet>(c, gen, net.device());
  const auto from = net.named_parameters();
  std::size_t copied = 0;
  for (auto& [name, value] : out->named_parameters()) {
    if (name.rfind("guidance_embedding.", 0) == 0) continue;  // the fresh embedding (linear_2 zero)
    for (const auto& [src_name, src] : from)
      if (src_name == name) {
        Tensor dst = value;  // a handle on the copy's parameter
        dst.copy_from(src);
        ++copied;
        break;
      }
  }
  DDPM_CHECK(copied == from.size(), "with_guidance_embedding: copied " << copied << " of the network's "
                                                                       << from.size() << " parameters");
  return out;
}

diffusion::DistillGrid guided_stage_grid(std::int64_t T, std::int64_t teacher_steps) {
  DDPM_CHECK(teacher_steps >= 1 && teacher_steps <= T && T % teacher_steps == 0,
             "--teacher-steps " << teacher_steps << " must divide the model's T = " << T
                                << " (the DDIM grid ddpm-sample --sampling-steps N visits)");
  diffusion::DistillGrid g;
  g.T = T;
  g.student = diffusion::ddim_sampling_grid(T, teacher_steps);
  g.teacher = g.student;
  return g;
}

diffusion::DenoiseFn weighted_denoiser(const unet::UNet& net, std::vector<double> w, nn::Context ctx) {
  return [&net, w = std::move(w), ctx](const Tensor& x, const std::vector<double>& t,
                                       const std::vector<std::int64_t>& y) {
    return w.empty() ? net.forward(x, t, y, ctx) : net.forward(x, t, y, w, ctx);
  };
}

diffusion::DenoiseFn unguided_denoiser(const unet::UNet& net) {
  return [&net](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return net.forward(x, t, y, std::vector<double>(static_cast<std::size_t>(x.dim(0)), 0.0), nn::Context{});
  };
}

double guided_sampling_weight(const std::optional<DistillationRecord>& record, const std::string& checkpoint,
                              double guidance_scale) {
  if (record && record->guided) {
    const GuidedRange& r = *record->guided;
    DDPM_CHECK(guidance_scale >= r.scale_min && guidance_scale <= r.scale_max,
               "--guidance-scale " << guidance_scale << " is outside the range [" << r.scale_min << ", "
                                   << r.scale_max << "] that " << checkpoint
                                   << " was guidance-distilled for (ddpm-distill --guided); its guidance embedding "
                                      "never saw such a weight. Pass --guidance-scale in that range");
  } else {
    DDPM_CHECK(guidance_scale >= 1, "--guidance-scale " << guidance_scale << " is below 1 for the guidance-distilled "
                                                        << "model " << checkpoint << " (w = s - 1 < 0)");
  }
  return guidance_scale - 1.0;
}

}  // namespace ddpm::run
