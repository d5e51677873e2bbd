// The temporal convolution (models/unet/temporal_conv.h) and the video UNet option that puts
// one after every resnet (unet.h temporal_conv). What is checked: the layer's names and a
// fresh layer being the identity; its gradient (input and every weight, proj_out moved away
// from zero) by finite differences in double; its output against a naive per-position loop
// in double (group norm, SiLU, the kernel-3 sum with zero padding, the projection); clips
// not seeing each other; a receptive field of 3 frames; one-frame clips seeing only
// themselves; recomputation; in the UNet the names, the draw order and a fresh model being
// the model without the layers; forward/backward of a video UNet with them; config.json;
// ddpm-train --init-from (an image source frame by frame at step 0, a video source without
// the layers, --train-only temporal selecting them).
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/run/finetune.h"
#include "models/unet/model_io.h"
#include "models/unet/temporal_conv.h"
#include "models/unet/unet.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm::unet {
namespace {

using testing::param;
using testing::random_tensor;

// Overwrites every parameter of m with N(0, scale^2) values in m's dtype (proj_out included,
// which starts at zero).
void perturb(const nn::Module& m, std::uint64_t seed, double scale = 0.3) {
  for (auto [name, p] : m.named_parameters()) p.copy_from(random_tensor(p.shape(), seed++, p.dtype(), scale));
}

std::map<std::string, Tensor> params_of(const nn::Module& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : m.named_parameters()) out[name] = t;
  return out;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector();
  double m = 0;
  for (std::size_t i = 0; i < av.size(); ++i) m = std::max(m, std::fabs(av[i] - bv[i]));
  return m;
}

// A layer of C channels in f64 with every weight non-zero.
std::unique_ptr<TemporalConv> perturbed_layer(std::int64_t C, int groups, std::uint64_t seed) {
  Generator gen(seed);
  auto layer = std::make_unique<TemporalConv>(C, groups, 1e-5, gen, Device::cpu());
  testing::parameters_to_f64(*layer);
  perturb(*layer, seed * 100);
  return layer;
}

// --- the layer -----------------------------------------------------------------------------

TEST(TemporalConv, NamesAndAFreshLayerIsTheIdentity) {
  Generator gen(3);
  TemporalConv layer(8, 4, 1e-5, gen, Device::cpu());
  std::vector<std::string> names;
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : layer.named_parameters()) names.push_back(name), shapes[name] = t.shape();
  EXPECT_EQ(names, (std::vector<std::string>{"norm.weight", "norm.bias", "conv.weight", "conv.bias",
                                             "proj_out.weight", "proj_out.bias"}));
  EXPECT_EQ(shapes.at("conv.weight"), (Shape{8, 24}));  // [C, 3C]: taps f-1, f, f+1
  EXPECT_EQ(shapes.at("proj_out.weight"), (Shape{8, 8}));
  const Tensor x = random_tensor({6, 2, 3, 8}, 5, DType::f32);  // 2 clips of 3 frames
  EXPECT_TRUE(testing::same_bits(layer.forward(x, 3), x));
  EXPECT_TRUE(testing::same_bits(layer.forward(x, 1), x));  // one-frame clips too
  testing::expect_value_error([&] { layer.forward(x, 4); }, "TemporalConv: 6 rows of [6, 2, 3, 8] are not whole "
                                                            "clips of 4 frames");
  testing::expect_value_error([&] { layer.forward(random_tensor({6, 2, 3, 4}, 1), 3); },
                              "is not [N*F, H, W, 8]");
}

TEST(TemporalConv, GradientMatchesFiniteDifferencesInDouble) {
  const auto layer = perturbed_layer(4, 2, 4);
  // 2 clips x 3 frames of 2x2, C = 4: the input and every weight.
  std::vector<Tensor> inputs = {param(random_tensor({6, 2, 2, 4}, 6))};
  for (const auto& [name, p] : layer->named_parameters()) inputs.push_back(param(p));
  ASSERT_EQ(inputs.size(), 7u);
  auto f = [&](const std::vector<Tensor>& in) { return layer->forward(in[0], 3); };
  EXPECT_TRUE(testing::gradcheck(f, inputs));
}

// The layer written out per clip, frame, position and channel (temporal_conv.h), in double:
//   h = SiLU(GN(x)) with the statistics of each clip's group over its F frames,
//   y[f] = x[f] + P (b + sum_k W_k h[f + k - 1]) + b_P, h outside [0, F) = 0.
std::vector<double> naive_temporal_conv(const Tensor& x, std::int64_t F, const TemporalConv& layer, int groups,
                                        double eps) {
  const std::map<std::string, Tensor> p = params_of(layer);
  const std::vector<double> xv = x.to_double_vector(), gamma = p.at("norm.weight").to_double_vector(),
                            beta = p.at("norm.bias").to_double_vector(), W = p.at("conv.weight").to_double_vector(),
                            b = p.at("conv.bias").to_double_vector(), P = p.at("proj_out.weight").to_double_vector(),
                            bp = p.at("proj_out.bias").to_double_vector();
  const std::int64_t N = x.dim(0) / F, HW = x.dim(1) * x.dim(2), C = x.dim(3), cg = C / groups;
  auto at = [&](std::int64_t n, std::int64_t f, std::int64_t q, std::int64_t c) {
    return ((n * F + f) * HW + q) * C + c;
  };
  std::vector<double> h(xv.size());
  for (std::int64_t n = 0; n < N; ++n)
    for (int g = 0; g < groups; ++g) {
      double s = 0, s2 = 0, count = 0;
      for (std::int64_t f = 0; f < F; ++f)
        for (std::int64_t q = 0; q < HW; ++q)
          for (std::int64_t c = g * cg; c < (g + 1) * cg; ++c) s += xv[at(n, f, q, c)], count += 1;
      const double mu = s / count;
      for (std::int64_t f = 0; f < F; ++f)
        for (std::int64_t q = 0; q < HW; ++q)
          for (std::int64_t c = g * cg; c < (g + 1) * cg; ++c) s2 += (xv[at(n, f, q, c)] - mu) * (xv[at(n, f, q, c)] - mu);
      const double rstd = 1.0 / std::sqrt(s2 / count + eps);
      for (std::int64_t f = 0; f < F; ++f)
        for (std::int64_t q = 0; q < HW; ++q)
          for (std::int64_t c = g * cg; c < (g + 1) * cg; ++c) {
            const double v = (xv[at(n, f, q, c)] - mu) * rstd * gamma[c] + beta[c];
            h[at(n, f, q, c)] = v / (1.0 + std::exp(-v));  // SiLU
          }
    }
  std::vector<double> y(xv.size()), conv(C);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t f = 0; f < F; ++f)
      for (std::int64_t q = 0; q < HW; ++q) {
        for (std::int64_t o = 0; o < C; ++o) {
          double acc = b[o];
          for (std::int64_t k = 0; k < 3; ++k) {
            const std::int64_t src = f + k - 1;
            if (src < 0 || src >= F) continue;  // zero padding at the clip's ends
            for (std::int64_t c = 0; c < C; ++c) acc += W[o * 3 * C + k * C + c] * h[at(n, src, q, c)];
          }
          conv[o] = acc;
        }
        for (std::int64_t o = 0; o < C; ++o) {
          double acc = bp[o];
          for (std::int64_t c = 0; c < C; ++c) acc += P[o * C + c] * conv[c];
          y[at(n, f, q, o)] = xv[at(n, f, q, o)] + acc;
        }
      }
  return y;
}

TEST(TemporalConv, MatchesANaivePerPositionLoopInDouble) {
  const auto layer = perturbed_layer(6, 3, 7);
  for (const std::int64_t F : {4, 2, 1}) {
    SCOPED_TRACE("frames " + std::to_string(F));
    const Tensor x = random_tensor({2 * F, 3, 2, 6}, 8);  // 2 clips of F frames of 3x2
    const Tensor y = layer->forward(x, F);
    const Tensor want = Tensor::from_vector(naive_temporal_conv(x, F, *layer, 3, 1e-5), x.shape(), DType::f64);
    EXPECT_TRUE(testing::all_close(y, want, 1e-12, 1e-10));
    EXPECT_GT(max_abs_diff(y, x), 1e-2);  // the layer does something: not x against x
  }
}

TEST(TemporalConv, ClipsDoNotSeeEachOther) {
  const auto layer = perturbed_layer(4, 2, 9);
  const Tensor x = random_tensor({6, 2, 2, 4}, 10);  // clips 0 and 1 of 3 frames
  // Change clip 1 (rows 3..5) only.
  const Tensor x2 = concat({slice(x, 0, 0, 3), add(slice(x, 0, 3, 3), random_tensor({3, 2, 2, 4}, 11))}, 0);
  const Tensor y = layer->forward(x, 3), y2 = layer->forward(x2, 3);
  EXPECT_TRUE(testing::same_bits(slice(y2, 0, 0, 3), slice(y, 0, 0, 3))) << "clip 0 sees clip 1";
  EXPECT_GT(max_abs_diff(slice(y2, 0, 3, 3), slice(y, 0, 3, 3)), 1e-3);
}

TEST(TemporalConv, OneLayerSeesOneFrameOnEachSide) {
  // One clip of 4 frames of 2x2. Swapping two pixels of frame 2 (all channels) leaves every
  // group-norm statistic of the clip as it was (up to rounding), so only the convolution's
  // taps can carry the change: frames 1, 2 and 3 see it, frame 0 does not.
  const auto layer = perturbed_layer(4, 2, 12);
  const Tensor x = random_tensor({4, 2, 2, 4}, 13);
  const Tensor f2 = slice(x, 0, 2, 1).reshape({1, 4, 4});  // frame 2, pixels in order
  const Tensor swapped = concat({slice(f2, 1, 1, 1), slice(f2, 1, 0, 1), slice(f2, 1, 2, 2)}, 1).reshape({1, 2, 2, 4});
  const Tensor x2 = concat({slice(x, 0, 0, 2), swapped, slice(x, 0, 3, 1)}, 0);
  const Tensor y = layer->forward(x, 4), y2 = layer->forward(x2, 4);
  EXPECT_LT(max_abs_diff(slice(y2, 0, 0, 1), slice(y, 0, 0, 1)), 1e-12) << "frame 0 sees frame 2";
  EXPECT_GT(max_abs_diff(slice(y2, 0, 1, 1), slice(y, 0, 1, 1)), 1e-3) << "frame 1 does not see frame 2";
  EXPECT_GT(max_abs_diff(slice(y2, 0, 3, 1), slice(y, 0, 3, 1)), 1e-3) << "frame 3 does not see frame 2";
}

TEST(TemporalConv, OneFrameClipsSeeOnlyThemselves) {
  // Clips of one frame (joint training's stills): both neighbours are the zero padding, so
  // the side taps' weights cannot matter, and each still is processed alone.
  const auto layer = perturbed_layer(4, 2, 14);
  const Tensor x = random_tensor({3, 2, 2, 4}, 15);
  const Tensor y = layer->forward(x, 1);
  EXPECT_GT(max_abs_diff(y, x), 1e-3);
  Tensor w = params_of(*layer).at("conv.weight");  // [4, 12]
  const Tensor centre = slice(w, 1, 4, 4);
  w.copy_from(concat({random_tensor({4, 4}, 16), centre, random_tensor({4, 4}, 17)}, 1));
  EXPECT_TRUE(testing::all_close(layer->forward(x, 1), y, 1e-14, 1e-12)) << "a side tap sees something";
  EXPECT_TRUE(testing::all_close(layer->forward(slice(x, 0, 1, 1), 1), slice(y, 0, 1, 1), 1e-14, 1e-12));
}

TEST(TemporalConv, RecomputationGivesTheSameGradients) {
  auto run = [](bool with_recompute) {
    const auto layer = perturbed_layer(4, 2, 18);
    for (const auto& [name, p] : layer->named_parameters()) param(p);
    Tensor x = param(random_tensor({6, 2, 2, 4}, 19));
    nn::Context ctx;
    ctx.recompute = with_recompute;
    sum(square(layer->forward(x, 3, ctx))).backward();
    std::vector<Tensor> grads = {x.grad()};
    for (const auto& [name, p] : layer->named_parameters()) grads.push_back(p.grad());
    return grads;
  };
  const std::vector<Tensor> plain = run(false), checkpointed = run(true);
  for (std::size_t k = 0; k < plain.size(); ++k)
    EXPECT_TRUE(testing::all_close(checkpointed[k], plain[k], 1e-12, 1e-10)) << "gradient " << k;
}

// --- in the video UNet ---------------------------------------------------------------------

// Two levels (8x8 and 4x4, the second with spatial attention), 2 classes, 3 frames.
UNetConfig conv_video_config(bool temporal_conv = true) {
  UNetConfig c = testing::tiny_unet_config(8, 3);
  c.attention_resolutions = {4};
  c.num_classes = 2;
  c.num_frames = 3;
  c.temporal_conv = temporal_conv;
  return c;
}

bool is_conv(const std::string& name) { return name.find("temp_convs.") != std::string::npos; }

TEST(TemporalConvUNet, LayersAreNamedDrawnLastAndStartAsTheIdentity) {
  Generator g1(21), g2(21);
  UNet with(conv_video_config(), g1, Device::cpu()), without(conv_video_config(false), g2, Device::cpu());
  std::map<std::string, Tensor> plain = params_of(without);
  int convs = 0;
  for (const auto& [name, t] : with.named_parameters()) {
    if (is_conv(name)) {
      ++convs;
      continue;
    }
    ASSERT_TRUE(plain.count(name)) << name;
    EXPECT_TRUE(testing::same_bits(t, plain.at(name))) << name;  // drawn as without the layers
  }
  EXPECT_EQ(static_cast<std::size_t>(with.named_parameters().size() - convs), plain.size());
  // 2 down resnets + the middle's 2 + 2 x 2 up resnets = 8 layers of 6 tensors.
  EXPECT_EQ(convs, 48);
  std::map<std::string, Shape> s;
  for (const auto& [name, t] : with.named_parameters()) s[name] = t.shape();
  EXPECT_EQ(s.at("down_blocks.0.temp_convs.0.conv.weight"), (Shape{8, 24}));
  EXPECT_EQ(s.at("down_blocks.1.temp_convs.0.norm.weight"), (Shape{16}));
  EXPECT_EQ(s.at("mid_block.temp_convs.1.proj_out.weight"), (Shape{16, 16}));
  EXPECT_EQ(s.at("up_blocks.1.temp_convs.1.conv.bias"), (Shape{8}));
  EXPECT_EQ(s.count("up_blocks.1.temp_convs.2.conv.bias"), 0u);

  // With every other weight non-zero (same values in both), the fresh layers change nothing.
  testing::parameters_to_f64(with);
  testing::parameters_to_f64(without);
  std::uint64_t seed = 700;
  for (auto [name, p] : without.named_parameters()) {
    p.copy_from(random_tensor(p.shape(), seed++, DType::f64, 0.3));
    Tensor twin = params_of(with).at(name);
    twin.copy_from(p);
  }
  const Tensor x = random_tensor({2, 3, 8, 8, 3}, 22);
  const Tensor a = with.forward(x, {10, 500}, {0, 1}, nn::Context{});
  const Tensor b = without.forward(x, {10, 500}, {0, 1}, nn::Context{});
  EXPECT_TRUE(testing::all_close(a, b, 1e-12, 1e-10));
  EXPECT_GT(max_abs_diff(b, Tensor::zeros(b.shape(), DType::f64)), 1e-3);
}

TEST(TemporalConvUNet, RunsForwardAndBackwardOnClipsAndStills) {
  Generator g(23);
  UNet net(conv_video_config(), g, Device::cpu());
  testing::parameters_to_f64(net);
  perturb(net, 800);
  for (const auto& [name, p] : net.named_parameters()) param(p);
  const Tensor x = random_tensor({2, 3, 8, 8, 3}, 24);
  const Tensor y = net.forward(x, {30, 600}, {1, 0}, nn::Context{});
  ASSERT_EQ(y.shape(), (Shape{2, 3, 8, 8, 3}));
  sum(square(y)).backward();
  for (const auto& [name, p] : net.named_parameters())
    if (is_conv(name)) {
      ASSERT_TRUE(p.grad().defined()) << name;
      EXPECT_GT(max_abs_diff(p.grad(), Tensor::zeros(p.shape(), DType::f64)), 0.0) << name;
    }
  // One-frame clips (joint image-video training) go through the same layers.
  const Tensor stills = net.forward(random_tensor({2, 1, 8, 8, 3}, 25), {5, 6}, {0, 1}, nn::Context{});
  EXPECT_EQ(stills.shape(), (Shape{2, 1, 8, 8, 3}));
  // The convolution mixes the frames of a clip: frame 0's output depends on frame 1.
  const Tensor x2 = concat({slice(x, 1, 0, 1), add(slice(x, 1, 1, 1), Tensor::full({2, 1, 8, 8, 3}, 0.5, DType::f64)),
                            slice(x, 1, 2, 1)},
                           1);
  NoGradGuard no_grad;
  EXPECT_GT(max_abs_diff(slice(net.forward(x2, {30, 600}, {1, 0}, nn::Context{}), 1, 0, 1), slice(y, 1, 0, 1)), 1e-6);
}

TEST(TemporalConvUNet, ConfigJsonHasTheKeyOnlyWhenOn) {
  const UNetConfig c = conv_video_config();
  const nlohmann::json j = config_to_json(c);
  EXPECT_EQ(j.at("temporal_conv"), true);
  EXPECT_TRUE(config_from_json(j).temporal_conv);
  EXPECT_EQ(config_to_json(config_from_json(j)), j);
  const nlohmann::json old = config_to_json(conv_video_config(false));  // a file from before the option
  EXPECT_FALSE(old.contains("temporal_conv"));
  EXPECT_FALSE(config_from_json(old).temporal_conv);
  nlohmann::json bad = j;
  bad["temporal_conv"] = 1;
  testing::expect_has(testing::io_error_message([&] { config_from_json(bad); }),
                      "temporal_conv must be true or false, got 1");
  UNetConfig image = conv_video_config();
  image.num_frames = 0;
  testing::expect_value_error([&] { image.validate(); }, "temporal_conv (convolutions over the frames) needs a video "
                                                         "model (num_frames >= 2); num_frames is 0");
}

// --- ddpm-train --init-from (models/run/finetune.h) -----------------------------------------

// A class-conditional UNet of config c, every weight non-zero in f64, as a fine-tune source.
struct Source {
  std::unique_ptr<UNet> net;
  run::FineTuneSource s;
};

Source source_of(const UNetConfig& c, std::uint64_t seed) {
  Source out;
  Generator g(seed);
  out.net = std::make_unique<UNet>(c, g, Device::cpu());
  testing::parameters_to_f64(*out.net);
  perturb(*out.net, seed * 10);
  out.s.model = c;
  for (const auto& [name, t] : out.net->named_parameters()) out.s.weights.emplace_back(name, t.clone());
  out.s.record = {{"source", "/source"}};
  return out;
}

Dataset clips(const UNetConfig& c, int frames) {
  Dataset d;
  d.name = "clips";
  d.n = 1;
  d.frames = frames;
  d.height = d.width = c.image_size;
  d.channels = c.in_channels;
  d.labels = {0};
  d.num_classes = c.num_classes;
  return d;
}

run::TrainOptions conv_options() {
  run::TrainOptions o;
  o.init_from = "/source";
  o.dropout = 0;
  o.temporal_conv = true;
  return o;
}

// The fine-tune's model of s with --temporal-conv, built and loaded as train_run does.
std::unique_ptr<UNet> finetuned(const run::FineTuneSource& s, UNetConfig* target_out = nullptr) {
  const UNetConfig target = run::finetune_unet_config(s, conv_options(), clips(s.model, 3));
  Generator g(99);  // another draw than the source's: every loaded weight must come from it
  auto net = std::make_unique<UNet>(target, g, Device::cpu());
  testing::parameters_to_f64(*net);
  run::load_finetune_weights(s, *net, target);
  if (target_out) *target_out = target;
  return net;
}

TEST(TemporalConvFineTune, AnImageSourceIsComputedFrameByFrameAtStepZero) {
  UNetConfig ic = conv_video_config();
  ic.num_frames = 0;
  ic.temporal_conv = false;
  const Source src = source_of(ic, 31);
  const std::unique_ptr<UNet> video = finetuned(src.s);
  EXPECT_TRUE(video->config().temporal_conv);
  EXPECT_EQ(video->config().num_frames, 3);
  const Tensor x = random_tensor({2, 3, 8, 8, 3}, 32);
  const Tensor y = video->forward(x, {7, 900}, {1, 0}, nn::Context{});
  const Tensor per_frame = src.net->forward(x.reshape({6, 8, 8, 3}), {7, 7, 7, 900, 900, 900}, {1, 1, 1, 0, 0, 0},
                                            nn::Context{});
  EXPECT_GT(max_abs_diff(per_frame, Tensor::zeros(per_frame.shape(), DType::f64)), 1e-2);
  EXPECT_TRUE(testing::all_close(y.reshape(per_frame.shape()), per_frame, 1e-12, 1e-10));
}

TEST(TemporalConvFineTune, AVideoSourceWithoutTheLayersGetsFreshOnes) {
  const Source src = source_of(conv_video_config(false), 33);
  UNetConfig target;
  const std::unique_ptr<UNet> net = finetuned(src.s, &target);
  EXPECT_TRUE(target.temporal_conv);
  const Tensor x = random_tensor({2, 3, 8, 8, 3}, 34);
  EXPECT_TRUE(testing::all_close(net->forward(x, {3, 300}, {0, 1}, nn::Context{}),
                                 src.net->forward(x, {3, 300}, {0, 1}, nn::Context{}), 1e-12, 1e-10));
  // A source that has them keeps them, flag or not (its architecture), and they are loaded.
  const Source with = source_of(conv_video_config(true), 35);
  run::TrainOptions no_flag = conv_options();
  no_flag.temporal_conv = false;
  EXPECT_TRUE(run::finetune_unet_config(with.s, no_flag, clips(with.s.model, 3)).temporal_conv);
  const std::unique_ptr<UNet> again = finetuned(with.s);
  EXPECT_TRUE(testing::same_bits(params_of(*again).at("mid_block.temp_convs.1.proj_out.weight"),
                                 params_of(*with.net).at("mid_block.temp_convs.1.proj_out.weight")));
  // On images the flag is refused by name.
  UNetConfig ic = conv_video_config(false);
  ic.num_frames = 0;
  const Source image = source_of(ic, 36);
  testing::expect_value_error([&] { run::finetune_unet_config(image.s, conv_options(), clips(ic, 1)); },
                              "--temporal-conv adds convolutions over a video model's frames; --data clips holds "
                              "images");
}

TEST(TemporalConvFineTune, TrainOnlyTemporalTrainsTheConvolutionsAndFreezesTheRest) {
  UNetConfig ic = conv_video_config();
  ic.num_frames = 0;
  ic.temporal_conv = false;
  const Source src = source_of(ic, 37);
  UNetConfig target;
  const std::unique_ptr<UNet> net = finetuned(src.s, &target);
  // Move the fresh layers away from the identity so every one of their weights has a gradient.
  std::uint64_t seed = 3800;
  for (auto [name, p] : net->named_parameters())
    if (is_conv(name) || name.find("temp_attentions.") != std::string::npos)
      p.copy_from(random_tensor(p.shape(), seed++, DType::f64, 0.3));
  const NamedTensors trained = run::train_only_parameters(*net, target);
  int convs = 0;
  for (const auto& [name, p] : trained) {
    param(p);
    convs += is_conv(name) ? 1 : 0;
  }
  EXPECT_EQ(convs, 48);
  const Tensor y = net->forward(random_tensor({2, 3, 8, 8, 3}, 39), {20, 400}, {0, 1}, nn::Context{});
  sum(square(y)).backward();
  int frozen = 0;
  for (const auto& [name, p] : net->named_parameters()) {
    const bool temporal = is_conv(name) || name.find("temp_attentions.") != std::string::npos;
    if (temporal) {
      ASSERT_TRUE(p.grad().defined()) << name;
      EXPECT_GT(max_abs_diff(p.grad(), Tensor::zeros(p.shape(), DType::f64)), 0.0) << name;
    } else {
      ++frozen;
      EXPECT_FALSE(p.requires_grad()) << name;
      EXPECT_FALSE(p.grad().defined()) << name;
    }
  }
  EXPECT_GT(frozen, 0);
}

}  // namespace
}  // namespace ddpm::unet
