// Joint image-video training (Ho et al. 2022, "Video Diffusion Models", sec. 3): still
// images as one-frame clips through a video UNet (unet.cpp), the trainer's stills
// (trainer.h Batch::stills), the loader's first_frame_batch, and ddpm-train's
// --joint-images checks. What is checked:
//   - a temporal block on one frame is x + to_out(to_v(GN(x) + p_0)), computed here in plain
//     loops from the block's weights (the attention masked to the frame itself);
//   - a video UNet on one-frame clips ignores to_q / to_k, is the image model frame by frame
//     when to_out = 0 and differs from it when not, and leaves a later video forward as it was;
//   - a joint step's gradient is N/(N+M) g_video + M/(N+M) g_still, with g_video from a
//     video-only trainer and g_still from the stills' draws replayed by hand; microbatches
//     accumulate the same gradient; resume is bit-identical;
//   - Min-SNR weights, label dropout, offset noise and input perturbation reach the stills,
//     each still with its own draws after the clips' (replayed by hand);
//   - every refusal names its flag or field.
// In f64 on the CPU, on the tiny UNet of tests/support.
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/data/loader.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/training_recipes.h"
#include "models/run/train_run.h"
#include "models/train/trainer.h"
#include "models/unet/temporal.h"
#include "models/unet/unet.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

using testing::random_tensor;

bool is_temporal(const std::string& name) { return name.find("temp_attentions") != std::string::npos; }

// Two levels (8x8 and 4x4, the second with spatial attention), 2 classes, 3 frames.
unet::UNetConfig video_config() {
  unet::UNetConfig c = testing::tiny_unet_config(8, 3);
  c.attention_resolutions = {4};
  c.num_classes = 2;
  c.num_frames = 3;
  return c;
}

// Every parameter of m (f64) set to fixed random values, seeded by its name, so parameters
// of the same name in two models get the same values.
void randomize(const nn::Module& m) {
  for (auto [name, p] : m.named_parameters())
    p.copy_from(random_tensor(p.shape(), 500 + std::hash<std::string>{}(name) % 100000, DType::f64, 0.3));
}

// --- one-frame clips through the video UNet ------------------------------------------------

TEST(VideoJoint, OneFrameTemporalBlockIsTheAttentionMaskedToItself) {
  const std::int64_t C = 4, G = 2, H = 2, W = 3, M = 2;
  const double eps = 1e-5;
  Generator gen(3);
  unet::TemporalAttention block(C, 2, G, eps, gen, Device::cpu());
  testing::parameters_to_f64(block);
  randomize(block);
  std::map<std::string, std::vector<double>> w;
  for (const auto& [name, p] : block.named_parameters()) w[name] = p.to_double_vector();
  const Tensor x = random_tensor({M, H, W, C}, 9);  // M stills, one frame each
  const std::vector<double> xv = x.to_double_vector(), y = block.forward(x, 1).to_double_vector();
  // By hand: n = GN(x) over each frame's own (H, W, C/G) group; s = n + p_0 with
  // p_0 = (sin 0, cos 0, ...) = (0, 1, 0, 1); out = x + W_o (W_v s + b_v) + b_o.
  auto linear = [&](const std::string& name, const std::vector<double>& in) {
    const std::vector<double>& wt = w.at(name + ".weight");
    const std::vector<double>& b = w.at(name + ".bias");
    std::vector<double> out(static_cast<std::size_t>(C));
    for (std::int64_t o = 0; o < C; ++o) {
      double acc = b[static_cast<std::size_t>(o)];
      for (std::int64_t i = 0; i < C; ++i) acc += wt[static_cast<std::size_t>(o * C + i)] * in[static_cast<std::size_t>(i)];
      out[static_cast<std::size_t>(o)] = acc;
    }
    return out;
  };
  const std::int64_t cg = C / G;
  double worst = 0.0, peak = 0.0;
  for (std::int64_t m = 0; m < M; ++m) {
    std::vector<double> mean(G, 0.0), var(G, 0.0);
    const double count = static_cast<double>(H * W * cg);
    for (std::int64_t g = 0; g < G; ++g) {
      for (std::int64_t p = 0; p < H * W; ++p)
        for (std::int64_t c = g * cg; c < (g + 1) * cg; ++c) mean[g] += xv[(m * H * W + p) * C + c] / count;
      for (std::int64_t p = 0; p < H * W; ++p)
        for (std::int64_t c = g * cg; c < (g + 1) * cg; ++c) {
          const double d = xv[(m * H * W + p) * C + c] - mean[g];
          var[g] += d * d / count;
        }
    }
    for (std::int64_t p = 0; p < H * W; ++p) {
      std::vector<double> s(static_cast<std::size_t>(C));
      for (std::int64_t c = 0; c < C; ++c) {
        const std::int64_t g = c / cg;
        const double n = (xv[(m * H * W + p) * C + c] - mean[g]) / std::sqrt(var[g] + eps) * w.at("norm.weight")[c] +
                         w.at("norm.bias")[c];
        s[c] = n + (c % 2 == 0 ? 0.0 : 1.0);  // + p_0
      }
      const std::vector<double> a = linear("to_out.0", linear("to_v", s));
      for (std::int64_t c = 0; c < C; ++c) {
        const std::size_t k = static_cast<std::size_t>((m * H * W + p) * C + c);
        worst = std::max(worst, std::fabs(y[k] - (xv[k] + a[c])));
        peak = std::max(peak, std::fabs(a[c]));
      }
    }
  }
  EXPECT_LT(worst, 1e-12);
  EXPECT_GT(peak, 1e-2);  // the attention branch is not zero
}

struct VideoAndImage {
  std::unique_ptr<unet::UNet> video, image;
  VideoAndImage() {
    Generator g1(12), g2(12);
    unet::UNetConfig ic = video_config();
    ic.num_frames = 0;
    video = std::make_unique<unet::UNet>(video_config(), g1, Device::cpu());
    image = std::make_unique<unet::UNet>(ic, g2, Device::cpu());
    testing::parameters_to_f64(*video);
    testing::parameters_to_f64(*image);
    randomize(*video);
    randomize(*image);  // the same names get the same values (the image model lacks the temporal ones)
  }
  void set_temporal(const std::string& part, std::uint64_t seed, double scale) const {
    for (auto [name, p] : video->named_parameters())
      if (is_temporal(name) && name.find(part) != std::string::npos)
        p.copy_from(random_tensor(p.shape(), seed++, DType::f64, scale));
  }
};

TEST(VideoJoint, OneFrameClipsThroughTheVideoUNet) {
  VideoAndImage m;
  const Tensor stills = random_tensor({2, 1, 8, 8, 3}, 20);
  const Tensor clips = random_tensor({2, 3, 8, 8, 3}, 21);
  const std::vector<double> t = {10, 500};
  const std::vector<std::int64_t> labels = {0, 1};
  const Tensor clip_out = m.video->forward(clips, t, labels, nn::Context{});
  const Tensor y = m.video->forward(stills, t, labels, nn::Context{});
  ASSERT_EQ(y.shape(), (Shape{2, 1, 8, 8, 3}));
  for (double v : y.to_double_vector()) ASSERT_TRUE(std::isfinite(v));
  // A video forward after the one-frame one is unchanged (the frame-position table is
  // rebuilt for F = 3 again, not reused at F = 1).
  EXPECT_TRUE(testing::same_bits(m.video->forward(clips, t, labels, nn::Context{}), clip_out));
  // One token: softmax weight 1, so the queries and keys cannot matter.
  m.set_temporal("to_q", 900, 1.0);
  m.set_temporal("to_k", 950, 1.0);
  EXPECT_TRUE(testing::all_close(m.video->forward(stills, t, labels, nn::Context{}), y, 1e-12, 1e-12));
  // ... but they do for the clips (the check above is not vacuous).
  EXPECT_FALSE(testing::all_close(m.video->forward(clips, t, labels, nn::Context{}), clip_out, 1e-6, 1e-6));
  // The image model sees the same frames as images: the outputs differ only through the
  // temporal blocks, by to_out.
  const Tensor as_images = m.image->forward(stills.reshape({2, 8, 8, 3}), t, labels, nn::Context{});
  EXPECT_FALSE(testing::all_close(y.reshape({2, 8, 8, 3}), as_images, 1e-6, 1e-6));
  m.set_temporal("to_out", 0, 0.0);
  const Tensor zero_out = m.video->forward(stills, t, labels, nn::Context{});
  EXPECT_TRUE(testing::all_close(zero_out.reshape({2, 8, 8, 3}), as_images, 1e-12, 1e-10));
  double peak = 0;
  for (double v : as_images.to_double_vector()) peak = std::max(peak, std::fabs(v));
  EXPECT_GT(peak, 1e-3);
}

// Other frame counts than 1 and num_frames run too (clip length, test_video_length.cpp);
// only a clip without frames is refused.
TEST(VideoJoint, OtherFrameCountsRunAndEmptyClipsAreRefused) {
  Generator g(15);
  unet::UNet video(video_config(), g, Device::cpu());
  EXPECT_EQ(video.forward(Tensor::zeros({1, 2, 8, 8, 3}), {1}, {0}, nn::Context{}).shape(), (Shape{1, 2, 8, 8, 3}));
  testing::expect_value_error([&] { video.forward(Tensor::zeros({1, 0, 8, 8, 3}), {1}, {0}, nn::Context{}); },
                              "UNet: input [1, 0, 8, 8, 3] has no frames per clip");
}

// --- the loader's stills ---------------------------------------------------------------------

TEST(VideoJoint, FirstFrameBatchTakesFrameZeroOfEachClip) {
  Dataset d;
  d.name = "clips";
  d.n = 3;
  d.frames = 2;
  d.height = 1;
  d.width = 2;
  d.channels = 1;
  d.num_classes = 3;
  // clip i, frame f, pixel x: 10 i + 5 f + x (frame 0 first)
  for (int i = 0; i < 3; ++i)
    for (int f = 0; f < 2; ++f)
      for (int x = 0; x < 2; ++x) d.images.push_back(static_cast<std::uint8_t>(10 * i + 5 * f + x));
  d.labels = {2, 0, 1};
  const Batch b = first_frame_batch(d, {2, 0, 2}, {0, 0, 1}, Device::cpu());
  ASSERT_EQ(b.images.shape(), (Shape{3, 1, 1, 2, 1}));
  const std::vector<double> v = b.images.to_double_vector();
  const double want[] = {20, 21, 0, 1, 21, 20};  // the third is clip 2's frame 0 mirrored
  for (int k = 0; k < 6; ++k) EXPECT_NEAR(v[k], want[k] / 127.5 - 1.0, 1e-7) << k;
  EXPECT_EQ(b.labels, (std::vector<std::int64_t>{1, 2, 1}));
  testing::expect_value_error([&] { first_frame_batch(d, {3}, {}, Device::cpu()); },
                              "clip index 3 is outside [0, 3)");
  d.frames = 1;
  d.images.resize(6);
  testing::expect_value_error([&] { first_frame_batch(d, {0}, {}, Device::cpu()); }, "is not a set of clips");
}

// --- the trainer ---------------------------------------------------------------------------

constexpr std::int64_t kClips = 2, kStills = 3;

// A tiny video UNet in f64 with every weight random (to_out too, so the temporal layers
// carry gradient), its slab and a schedule.
struct Rig {
  diffusion::DiffusionSchedule schedule{diffusion::cosine_betas(40)};
  std::unique_ptr<unet::UNet> net;
  ParameterSlab slab;
  Rig() {
    Generator g(12);
    net = std::make_unique<unet::UNet>(video_config(), g, Device::cpu());
    testing::parameters_to_f64(*net);
    randomize(*net);
    slab.pack(net->named_parameters());
  }
  diffusion::DenoiseFn fn() const {
    const unet::UNet* n = net.get();
    return [n](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& l) {
      return n->forward(x, t, l, nn::Context{});
    };
  }
};

const Tensor& clips_x0() {
  static const Tensor x = random_tensor({kClips, 3, 8, 8, 3}, 31, DType::f64, 0.8);
  return x;
}
const Tensor& stills_x0() {
  static const Tensor x = random_tensor({kStills, 1, 8, 8, 3}, 32, DType::f64, 0.8);
  return x;
}
const std::vector<std::int64_t> kClipLabels = {1, 0}, kStillLabels = {0, 1, 1};

train::Batch video_only(std::int64_t, Generator&) { return {clips_x0(), kClipLabels, Tensor()}; }
train::Batch joint(std::int64_t, Generator&) { return {clips_x0(), kClipLabels, Tensor(), stills_x0(), kStillLabels}; }

train::TrainerConfig config(std::int64_t joint_images) {
  train::TrainerConfig c;
  c.adamw.lr = 1e-3;
  c.grad_clip = 0.0;
  c.num_classes = 2;
  c.joint_images = joint_images;
  c.seed = 7;
  return c;
}

TEST(VideoJoint, JointGradientIsTheWeightedSumOfVideoAndStillGradients) {
  Rig a, b, c;
  train::Trainer joint_tr(a.slab, a.fn(), a.schedule, joint, config(kStills));
  train::Trainer video_tr(b.slab, b.fn(), b.schedule, video_only, config(0));
  const train::StepMetrics mj = joint_tr.step(), mv = video_tr.step();
  // The clips' draws come first, so the clips see the numbers of a video-only step.
  EXPECT_EQ(mj.video_loss, mv.loss);
  // The stills by hand: replay the generator past the clips' t and noise, then their t and
  // noise; loss = mean over stills of the mean squared eps error.
  Generator gen(7);
  rand({kClips}, gen, Device::cpu(), DType::f64);
  randn(clips_x0().shape(), gen, Device::cpu(), DType::f64);
  diffusion::Timesteps t;
  for (double u : rand({kStills}, gen, Device::cpu(), DType::f64).to_double_vector())
    t.push_back(std::min<std::int64_t>(39, static_cast<std::int64_t>(u * 40)));
  const Tensor noise = randn(stills_x0().shape(), gen, Device::cpu(), DType::f64);
  const Tensor xt = diffusion::q_sample(c.schedule, stills_x0(), t, noise);
  c.slab.zero_grad();
  Tensor still_loss = mean(square(sub(c.fn()(xt, std::vector<double>(t.begin(), t.end()), kStillLabels), noise)));
  still_loss.backward();
  EXPECT_NEAR(mj.still_loss, still_loss.item(), 1e-12);
  const double fv = static_cast<double>(kClips) / (kClips + kStills), fs = static_cast<double>(kStills) / (kClips + kStills);
  EXPECT_NEAR(mj.loss, fv * mv.loss + fs * still_loss.item(), 1e-12);
  const std::vector<double> gj = a.slab.grads().to_double_vector(), gv = b.slab.grads().to_double_vector(),
                            gs = c.slab.grads().to_double_vector();
  double peak = 0;
  for (std::size_t i = 0; i < gj.size(); ++i) {
    ASSERT_NEAR(gj[i], fv * gv[i] + fs * gs[i], 1e-10 + 1e-8 * std::fabs(gj[i])) << "element " << i;
    peak = std::max(peak, std::fabs(gs[i]));
  }
  EXPECT_GT(peak, 1e-4);  // the stills contribute
}

// The training recipes (training_recipes.h) reach the stills as they reach the clips: each
// still gets its own Min-SNR weight, label dropout, offset noise (one draw per still and
// channel, broadcast over its one frame) and input perturbation, drawn after the clips'.
// Replayed by hand here in the trainer's draw order.
TEST(VideoJoint, RecipesApplyToTheStills) {
  Rig a, b, c;
  train::TrainerConfig cr = config(kStills), cv = config(0);
  for (train::TrainerConfig* k : {&cr, &cv}) {
    k->snr_gamma = 2.0;
    k->label_dropout = 0.5;
    k->noise_offset = 0.3;
    k->input_perturbation = 0.2;
  }
  train::Trainer joint_tr(a.slab, a.fn(), a.schedule, joint, cr);
  train::Trainer video_tr(b.slab, b.fn(), b.schedule, video_only, cv);
  const train::StepMetrics mj = joint_tr.step(), mv = video_tr.step();
  // Replay the clips' draws (t, label dropout, noise, offset, perturbation), then the stills'.
  Generator gen(7);
  rand({kClips}, gen, Device::cpu(), DType::f64);
  rand({kClips}, gen, Device::cpu(), DType::f64);
  randn(clips_x0().shape(), gen, Device::cpu(), DType::f64);
  randn({kClips, 1, 1, 1, 3}, gen, Device::cpu(), DType::f64);
  randn(clips_x0().shape(), gen, Device::cpu(), DType::f64);
  diffusion::Timesteps t;
  for (double u : rand({kStills}, gen, Device::cpu(), DType::f64).to_double_vector())
    t.push_back(std::min<std::int64_t>(39, static_cast<std::int64_t>(u * 40)));
  std::vector<std::int64_t> labels = kStillLabels;
  const std::vector<double> drop = rand({kStills}, gen, Device::cpu(), DType::f64).to_double_vector();
  for (std::size_t j = 0; j < labels.size(); ++j)
    if (drop[j] < 0.5) labels[j] = 2;  // the null label
  EXPECT_NE(labels, kStillLabels) << "this seed drops no still label: the dropout is not exercised";
  // Offset noise: one N(0, 1) per still and channel, broadcast over the frame's pixels.
  Tensor noise = randn(stills_x0().shape(), gen, Device::cpu(), DType::f64);
  noise = add(noise, scale(randn({kStills, 1, 1, 1, 3}, gen, Device::cpu(), DType::f64), 0.3));
  const Tensor xi = scale(randn(stills_x0().shape(), gen, Device::cpu(), DType::f64), 0.2);
  const std::vector<double> w = diffusion::min_snr_weights(c.schedule, diffusion::ModelMeanType::eps, t, 2.0);
  double spread = 0;
  for (double wj : w) spread = std::max(spread, std::fabs(wj - 1.0));
  EXPECT_GT(spread, 1e-3) << "Min-SNR weights all 1: the weighting is not exercised";
  // loss_j = mean((eps_theta(q_sample(x0, t, noise + xi)) - noise)^2): the input is perturbed,
  // the target is not.
  const Tensor xt = diffusion::q_sample(c.schedule, stills_x0(), t, add(noise, xi));
  const Tensor err = square(sub(c.fn()(xt, std::vector<double>(t.begin(), t.end()), labels), noise));
  const Tensor per = mean(err.reshape({kStills, -1}), {1});  // [M]
  const std::vector<double> pv = per.to_double_vector();
  EXPECT_NEAR(mj.still_loss, (pv[0] + pv[1] + pv[2]) / kStills, 1e-12);
  // The clips saw the video-only trainer's draws; the step's loss is sum_i w_i l_i / (N + M)
  // over clips and stills, and so is its gradient.
  const double n_total = kClips + kStills;
  c.slab.zero_grad();
  Tensor still_sum = sum(mul(per, Tensor::from_vector(w, {kStills}, DType::f64, Device::cpu())));
  still_sum.backward();
  EXPECT_NEAR(mj.loss, (kClips * mv.loss + still_sum.item()) / n_total, 1e-12);
  const std::vector<double> gj = a.slab.grads().to_double_vector(), gv = b.slab.grads().to_double_vector(),
                            gs = c.slab.grads().to_double_vector();
  for (std::size_t i = 0; i < gj.size(); ++i)
    ASSERT_NEAR(gj[i], (kClips * gv[i] + gs[i]) / n_total, 1e-10 + 1e-8 * std::fabs(gj[i])) << "element " << i;
}

TEST(VideoJoint, MicrobatchesAccumulateTheJointGradient) {
  Rig a, b;
  train::TrainerConfig cm = config(kStills);
  cm.microbatch = 2;  // clips 2; stills 2 + 1
  train::Trainer full(a.slab, a.fn(), a.schedule, joint, config(kStills));
  train::Trainer micro(b.slab, b.fn(), b.schedule, joint, cm);
  const train::StepMetrics mf = full.step(), mm = micro.step();
  EXPECT_NEAR(mf.loss, mm.loss, 1e-13);
  EXPECT_TRUE(testing::all_close(b.slab.grads(), a.slab.grads(), 1e-12, 1e-10));
}

TEST(VideoJoint, ResumeIsBitIdentical) {
  // Stills drawn from the trainer's generator, as ddpm-train's provider does.
  auto drawn = [](std::int64_t, Generator& gen) {
    return train::Batch{clips_x0(), kClipLabels, Tensor(), randn({kStills, 1, 8, 8, 3}, gen, Device::cpu(), DType::f64),
                        kStillLabels};
  };
  train::TrainerConfig c = config(kStills);
  c.label_dropout = 0.3;
  Rig a, b, r;
  train::Trainer straight(a.slab, a.fn(), a.schedule, drawn, c);
  for (int k = 0; k < 3; ++k) straight.step();
  train::Trainer first(b.slab, b.fn(), b.schedule, drawn, c);
  first.step();
  train::Trainer resumed(r.slab, r.fn(), r.schedule, drawn, c);
  resumed.load_state(first.state());
  resumed.step();
  resumed.step();
  EXPECT_TRUE(testing::same_bits(r.slab.values(), a.slab.values()));
  EXPECT_TRUE(testing::same_bits(resumed.ema().values(), straight.ema().values()));
}

// A communicator that claims two ranks (nothing is exchanged: the trainer refuses first).
class TwoRanks final : public dist::Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  std::string describe() const override { return "two fake ranks"; }
  void all_reduce_sum(void*, std::int64_t, DType, Device) override {}
  void broadcast_bytes(void*, std::size_t, int, Device) override {}
  void barrier() override {}
};

TEST(VideoJoint, TrainerRefusals) {
  Rig a;
  auto make = [&](const train::TrainerConfig& c, train::BatchProvider p, dist::Communicator* comm = nullptr) {
    return std::make_unique<train::Trainer>(a.slab, a.fn(), a.schedule, p, c, comm);
  };
  train::TrainerConfig c = config(-1);
  testing::expect_value_error([&] { make(c, joint); }, "joint_images (still images per step) must be >= 0");
  c = config(kStills);
  c.objective = train::Objective::edm;
  testing::expect_value_error([&] { make(c, joint); }, "supports the DDPM objective only, not edm");
  c = config(kStills);
  c.timesteps = train::TimestepSampling::loss_second_moment;
  testing::expect_value_error([&] { make(c, joint); }, "importance sampling of t (loss-second-moment) is not supported");
  TwoRanks two;
  testing::expect_value_error([&] { make(config(kStills), joint, &two); }, "runs in one process; the world size is 2");
  // The batch against the config.
  testing::expect_value_error([&] { make(config(kStills), video_only)->step(); }, "and stills none");
  testing::expect_value_error([&] { make(config(0), joint)->step(); }, "but joint image-video training is off");
  testing::expect_value_error([&] { make(config(2), joint)->step(); }, "needs clips x0 [N, F, H, W, C] and 2 stills");
  auto with_cond = [](std::int64_t, Generator&) {
    return train::Batch{clips_x0(), kClipLabels, clips_x0(), stills_x0(), kStillLabels};
  };
  testing::expect_value_error([&] { make(config(kStills), with_cond)->step(); }, "takes no condition");
  auto few_labels = [](std::int64_t, Generator&) {
    return train::Batch{clips_x0(), kClipLabels, Tensor(), stills_x0(), {0}};
  };
  testing::expect_value_error([&] { make(config(kStills), few_labels)->step(); }, "1 still labels for 3 stills");
}

// --- ddpm-train's flag -----------------------------------------------------------------------

TEST(VideoJoint, OptionRefusalsNameTheFlag) {
  run::TrainOptions base;
  base.data = "moving-toy";
  base.out = "/nonexistent/run";
  base.joint_images = 2;
  run::validate_options(base);  // the supported combination passes
  auto refused = [&](auto change, const std::string& fragment) {
    run::TrainOptions o = base;
    change(o);
    testing::expect_value_error([&] { run::validate_options(o); }, fragment);
  };
  refused([](run::TrainOptions& o) { o.joint_images = -1; }, "--joint-images must be >= 0 (0 = off), got -1");
  refused([](run::TrainOptions& o) { o.data = "toy"; }, "--joint-images 2 adds still images to batches of clips");
  refused([](run::TrainOptions& o) { o.objective = "edm"; }, "supports the DDPM objective only, not --objective edm");
  refused([](run::TrainOptions& o) { o.objective = "vdm"; }, "not --objective vdm");
  refused([](run::TrainOptions& o) { o.schedule_sampler = "loss-second-moment"; },
          "--schedule-sampler loss-second-moment is not supported with it");
  refused([](run::TrainOptions& o) { o.first_frame_condition = true; }, "does not apply with --first-frame-condition");
  refused([](run::TrainOptions& o) { o.text.enabled = true; }, "does not apply with --text-cond");
  TwoRanks two;
  refused([&](run::TrainOptions& o) { o.comm = &two; }, "runs in one process; this launch has 2");
}

}  // namespace
}  // namespace ddpm
