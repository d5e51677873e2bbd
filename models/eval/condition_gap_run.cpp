// models/eval/condition_gap_run.cpp: `ddpm-eval condition-gap` (eval_run.h): opens the run,
// builds its conditioned denoiser (class labels or captions) and prints and writes the report
// that condition_gap.h measures.
#include <iomanip>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/eval/caption_condition.h"
#include "models/eval/eval_run.h"
#include "models/run/latent_run.h"
#include "models/run/model_source.h"
#include "models/run/super_res_run.h"

namespace ddpm::eval {
namespace {

// "100,300,500" -> {100, 300, 500}; a piece that is not a whole number is a ValueError naming it.
diffusion::Timesteps parse_timestep_list(const std::string& text) {
  diffusion::Timesteps ts;
  std::stringstream in(text);
  std::string piece;
  while (std::getline(in, piece, ',')) {
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(piece, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    DDPM_CHECK(used > 0 && used == piece.size(),
               "condition-gap: --timesteps " << text << ": \"" << piece << "\" is not a whole number (give a "
                                                                   "comma-separated list such as 100,300,500)");
    ts.push_back(v);
  }
  DDPM_CHECK(!ts.empty(), "condition-gap: --timesteps \"" << text << "\" names no timestep");
  return ts;
}

}  // namespace

ConditionGapReport run_condition_gap(const ConditionGapArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.checkpoint.empty(), "condition-gap needs --checkpoint RUN|CHECKPOINT_DIR");
  const diffusion::Timesteps timesteps = parse_timestep_list(a.timesteps);
  check_report_file(a.json, "--json", a.overwrite, "condition-gap");
  // The images are scored in pixel space against the run's own training target.
  run::refuse_latent_model(a.checkpoint, "ddpm-eval condition-gap");
  run::ModelSource src = run::open_model(a.checkpoint, a.device, a.ema);
  run::refuse_video_model(src, a.checkpoint, "ddpm-eval condition-gap");
  const run::DiffusionSettings& d = src.diffusion;
  DDPM_CHECK(!d.vdm, "condition-gap: " << a.checkpoint << " was trained with the VDM objective (continuous t): "
                                                          "condition-gap handles DDPM runs only");
  DDPM_CHECK(!d.edm, "condition-gap: " << a.checkpoint
                                       << " was trained with the EDM objective (a preconditioned network of a "
                                          "continuous sigma, not an eps, x_0 or v prediction at a discrete t): "
                                          "condition-gap handles DDPM runs only");
  DDPM_CHECK(!d.ict, "condition-gap: " << a.checkpoint << " was trained with --objective ict (a consistency "
                                                          "function, not a denoiser): condition-gap handles DDPM runs only");
  run::refuse_super_res_model(src.net->config(), a.checkpoint, "ddpm-eval condition-gap");
  const unet::UNet& net = *src.net;
  DDPM_CHECK(src.text || net.config().num_classes > 0,
             "condition-gap: " << a.checkpoint
                               << " is unconditional (no class labels, no text encoder): there is no condition "
                                  "to replace; give a run trained with --num-classes or --text-cond");
  const diffusion::DiffusionSchedule schedule(run::diffusion_betas(d));
  for (std::int64_t t : timesteps)
    DDPM_CHECK(t >= 0 && t < schedule.num_timesteps(), "condition-gap: --timesteps " << t << " is outside the "
                                                           << "model's 0.." << schedule.num_timesteps() - 1);

  Dataset data = load_eval_images(a.data, a.split, a.data_dir, net.config().image_size);
  ConditionGapOptions o;
  o.mean_type = d.predict;
  o.learned_sigma = net.config().learn_sigma;
  o.timesteps = timesteps;
  o.roll = a.roll;
  o.batch_size = a.batch_size;
  o.limit = a.limit;
  o.seed = a.seed;
  o.device = a.device;
  diffusion::DenoiseFn fn = [&net](const Tensor& x, const std::vector<double>& t,
                                   const std::vector<std::int64_t>& labels) {
    return net.forward(x, t, labels, nn::Context{});
  };
  std::string condition;
  if (src.text) {  // each image's label becomes its caption's index; the null one is ""
    const CaptionCondition c = condition_on_captions(*src.text, data, "condition-gap");
    fn = c.fn;
    o.num_classes = static_cast<int>(c.table.size());
    condition = "captions (" + c.source + ", " + std::to_string(c.table.size()) + " distinct); null = the empty caption";
  } else {
    DDPM_CHECK(data.has_labels(), "condition-gap: the model is class-conditional but " << data.name
                                                                                      << " has no labels");
    o.num_classes = net.config().num_classes;
    condition = "class labels (" + std::to_string(o.num_classes) + " classes); null = label " +
                std::to_string(o.num_classes);
  }
  const std::string model = src.weights_path + " (" + src.kind + (src.ema ? ", EMA" : "") + "), T=" +
                            std::to_string(d.diffusion_steps) + " " + diffusion::noise_schedule_name(d.noise_schedule) +
                            ", predicts " + diffusion::model_mean_type_name(o.mean_type);
  const std::int64_t n = a.limit > 0 ? std::min(a.limit, data.n) : data.n;
  out << "model: " << model << "\n"
      << "data: " << data.name << ", first " << n << " images; condition: " << condition << "; rolled = the "
      << "condition of image (i + " << a.roll << ") mod " << n << "; seed " << a.seed << std::endl;
  const ConditionGapReport r = evaluate_condition_gap(schedule, fn, data, data.labels, o);
  const char* target = diffusion::model_mean_type_name(o.mean_type);
  out << "rolled condition differs from the own one for " << r.rolled_differs << " of " << r.n << " images\n"
      << "mse against the " << target << " target\n"
      << std::setw(6) << "t" << std::setw(12) << "own" << std::setw(12) << "rolled" << std::setw(12) << "null"
      << std::setw(12) << "gap" << std::setw(16) << "|own-rolled|^2" << "\n";
  for (const ConditionGapRow& row : r.rows)
    out << std::setw(6) << row.t << std::scientific << std::setprecision(4) << std::setw(12) << row.mse_own
        << std::setw(12) << row.mse_rolled << std::setw(12) << row.mse_null << std::setw(12) << row.gap
        << std::setw(16) << row.output_change << std::defaultfloat << "\n";
  out << "condition gap " << std::scientific << std::setprecision(4) << r.mean_gap << std::defaultfloat
      << " (mean over " << r.rows.size() << " timesteps of (rolled - own) / own) in " << std::fixed
      << std::setprecision(1) << r.seconds << " s" << std::defaultfloat << "\n";
  if (!a.json.empty()) {
    nlohmann::json j;
    j["model"] = model;
    j["data"] = data.name;
    j["condition"] = condition;
    j["images"] = r.n;
    j["roll"] = a.roll;
    j["rolled_differs"] = r.rolled_differs;
    j["seed"] = a.seed;
    j["target"] = target;
    j["mean_gap"] = r.mean_gap;
    for (const ConditionGapRow& row : r.rows)
      j["rows"].push_back({{"t", row.t}, {"mse_own", row.mse_own}, {"mse_rolled", row.mse_rolled},
                           {"mse_null", row.mse_null}, {"gap", row.gap}, {"output_change", row.output_change}});
    write_file_atomic(a.json, j.dump(1) + "\n");
    out << "wrote " << a.json << "\n";
  }
  return r;
}

}  // namespace ddpm::eval
