// The temporal decoder of the autoencoder (models/autoencoder/autoencoder.h "Temporal
// decoder"; Video LDM, Blattmann et al. 2023) and its fine-tuning (models/run/
// temporal_decoder_run.h): a fresh temporal decoder equals the image decoder frame by frame
// and mixes frames only within a clip once trained; the clip loss's gradients against
// central finite differences in f64 and reaching only what --train-only trains; the config
// round trip (an old config without temporal_frames still loads); a few fine-tuning steps
// lower the clip loss on moving-toy; LatentCodec::use_clip_decoder's checks.
#include <algorithm>
#include <cmath>
#include <sstream>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/ops/concat.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/run/data_spec.h"
#include "models/run/latent_run.h"
#include "models/run/temporal_decoder_run.h"
#include "support/gradcheck.h"
#include "support/temp_dir.h"
#include "support/tiny_encoder.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

using autoencoder::Autoencoder;
using autoencoder::AutoencoderConfig;
using testing::expect_value_error;

AutoencoderConfig tiny_config(int frames = 0) {
  AutoencoderConfig c;
  c.in_channels = 1;
  c.base_channels = 4;
  c.channel_mult = {1, 2};
  c.num_res_blocks = 1;
  c.z_channels = 2;
  c.norm_groups = 2;
  c.temporal_frames = frames;
  return c;
}

// Every parameter moved off its initial value (proj_out and the attention's output start at
// zero, which would make the temporal layers and their gradients invisible).
void perturb(const Autoencoder& ae, std::uint64_t seed, double amount = 0.1) {
  Generator g(seed);
  for (const auto& [name, t] : ae.named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += static_cast<float>(amount) * noise[static_cast<std::size_t>(i)];
  }
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_double_vector(), y = b.to_double_vector();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// Frame f of clip n of [N, F, ...] as [1, ...].
Tensor frame(const Tensor& clips, std::int64_t n, std::int64_t f) {
  const std::int64_t F = clips.dim(1);
  const Tensor frames = clips.reshape({clips.dim(0) * F, clips.dim(2), clips.dim(3), clips.dim(4)});
  return slice(frames, 0, n * F + f, 1);
}

TEST(TemporalDecoder, FreshDecoderEqualsTheImageDecoderFrameByFrame) {
  // Built from the same seed, the image parameters draw the same values (the temporal layers
  // come last) and carry the same names.
  Generator gi(5), gt(5);
  Autoencoder image(tiny_config(), gi, Device::cpu());
  Autoencoder video(tiny_config(3), gt, Device::cpu());
  const auto ip = image.named_parameters(), vp = video.named_parameters();
  ASSERT_GT(vp.size(), ip.size());
  for (const auto& [name, t] : ip) {
    const auto it = std::find_if(vp.begin(), vp.end(), [&](const nn::NamedTensor& q) { return q.first == name; });
    ASSERT_NE(it, vp.end()) << name;
    EXPECT_EQ(max_abs_diff(it->second, t), 0.0) << name;
  }
  for (const auto& [name, t] : vp)
    if (autoencoder::is_temporal_parameter(name))
      EXPECT_EQ(name.rfind("decoder.", 0), 0u) << name << " is not under the decoder";
  EXPECT_TRUE(std::any_of(vp.begin(), vp.end(), [](const nn::NamedTensor& q) {
    return q.first == "decoder.mid_block.temporal_convs.1.proj_out.weight";
  }));
  EXPECT_TRUE(std::any_of(vp.begin(), vp.end(), [](const nn::NamedTensor& q) {
    return q.first == "decoder.up_blocks.1.temporal_convs.1.conv.weight";  // 2 resnets per up level
  }));

  // with_temporal_decoder on a trained-looking (perturbed) image autoencoder: its decode of
  // the frames as one batch exactly (the temporal layers add exact zeros), and of each frame
  // alone to float rounding (a batch of 1 sums in another order).
  perturb(image, 9);
  Generator g(1);
  const auto fresh = autoencoder::with_temporal_decoder(image, 3, g);
  const Tensor z = testing::random_tensor({2, 3, 2, 2, 2}, 21, DType::f32);  // [N, F, h, w, z]
  const Tensor clips = fresh->decode_clips(z);                              // [2, 3, 4, 4, 1]
  ASSERT_EQ(clips.shape(), (Shape{2, 3, 4, 4, 1}));
  EXPECT_EQ(max_abs_diff(clips.reshape({6, 4, 4, 1}), image.decode(z.reshape({6, 2, 2, 2}))), 0.0);
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t f = 0; f < 3; ++f) EXPECT_LT(max_abs_diff(frame(clips, n, f), image.decode(frame(z, n, f))), 1e-5);
  // An image decoder decodes clips frame by frame too; a temporal one refuses images and
  // clips of another length.
  EXPECT_EQ(max_abs_diff(image.decode_clips(z), clips), 0.0);
  expect_value_error([&] { fresh->decode(frame(z, 0, 0)); }, "decodes clips");
  expect_value_error([&] { fresh->decode_clips(testing::random_tensor({1, 2, 2, 2, 2}, 3, DType::f32)); },
                     "clips of 3 frames");
}

TEST(TemporalDecoder, TrainedLayersMixFramesWithinAClipOnly) {
  Generator g(2);
  Autoencoder ae(tiny_config(3), g, Device::cpu());
  perturb(ae, 4);  // proj_out off zero: the frames now see their neighbours
  Tensor z = testing::random_tensor({2, 3, 2, 2, 2}, 8, DType::f32);
  const Tensor before = ae.decode_clips(z);
  // Change frame 0 of clip 0: frames 1 and 2 of that clip change, clip 1 does not.
  std::vector<float> v = z.to_vector();
  for (int i = 0; i < 8; ++i) v[static_cast<std::size_t>(i)] += 1.0f;
  const Tensor after = ae.decode_clips(Tensor::from_vector(v, z.shape()));
  EXPECT_GT(max_abs_diff(frame(before, 0, 1), frame(after, 0, 1)), 1e-4);
  EXPECT_GT(max_abs_diff(frame(before, 0, 2), frame(after, 0, 2)), 1e-6);  // two layers reach f + 2
  EXPECT_EQ(max_abs_diff(frame(before, 1, 0), frame(after, 1, 0)), 0.0);
  EXPECT_EQ(max_abs_diff(frame(before, 1, 2), frame(after, 1, 2)), 0.0);
}

TEST(TemporalDecoder, ClipLossGradientsMatchFiniteDifferences) {
  AutoencoderConfig c = tiny_config(2);
  c.base_channels = 2;  // 2 and 4 channels: every decoder parameter checked quickly
  Generator g(6);
  Autoencoder ae(c, g, Device::cpu());
  perturb(ae, 7);
  testing::parameters_to_f64(ae);
  const Tensor x = testing::random_tensor({1, 2, 4, 4, 1}, 11, DType::f64, 0.7);  // [N, F, H, W, C]
  const Tensor eps = testing::random_tensor({2, 2, 2, 2}, 12);                    // one per frame
  // l2 through every decoder parameter; l1 (the same code but for the per-pixel term) through
  // the temporal layers only, to keep the test short.
  for (const auto rec : {autoencoder::ReconstructionLoss::l2, autoencoder::ReconstructionLoss::l1}) {
    const bool l2 = rec == autoencoder::ReconstructionLoss::l2;
    SCOPED_TRACE(l2 ? "l2" : "l1");
    std::vector<Tensor> inputs;
    for (const auto& [name, p] : run::temporal_finetune_parameters(ae, l2 ? "decoder" : "temporal")) inputs.push_back(p);
    auto loss = [&](const std::vector<Tensor>&) { return autoencoder::temporal_decoder_loss(ae, x, eps, rec).reconstruction; };
    EXPECT_TRUE(testing::gradcheck(loss, inputs, 1e-6, 1e-6, 1e-4));
  }
}

TEST(TemporalDecoder, GradientsReachOnlyWhatTrains) {
  for (const std::string only : {"temporal", "decoder"}) {
    SCOPED_TRACE(only);
    Generator g(3);
    Autoencoder ae(tiny_config(2), g, Device::cpu());
    perturb(ae, 5);
    const auto trainable = run::temporal_finetune_parameters(ae, only);
    const Tensor x = testing::random_tensor({1, 2, 4, 4, 1}, 13, DType::f32, 0.7);
    const Tensor eps = testing::random_tensor({2, 2, 2, 2}, 14, DType::f32);
    autoencoder::temporal_decoder_loss(ae, x, eps, autoencoder::ReconstructionLoss::l2).reconstruction.backward();
    std::int64_t trained = 0;
    for (const auto& [name, p] : ae.named_parameters()) {
      const bool temporal = autoencoder::is_temporal_parameter(name);
      const bool should = only == "temporal" ? temporal : autoencoder::is_decoder_parameter(name);
      EXPECT_EQ(p.requires_grad(), should) << name;
      EXPECT_EQ(std::any_of(trainable.begin(), trainable.end(), [&](const nn::NamedTensor& q) { return q.first == name; }),
                should)
          << name;
      const Tensor gr = p.grad();
      const bool has = gr.defined() && max_abs_diff(gr, Tensor::zeros(p.shape(), gr.dtype(), gr.device())) > 0;
      EXPECT_EQ(has, should) << name << (should ? " got no gradient" : " is frozen but got a gradient");
      trained += should;
    }
    EXPECT_GT(trained, 0);
  }
  Generator g(3);
  Autoencoder ae(tiny_config(2), g, Device::cpu());
  expect_value_error([&] { run::temporal_finetune_parameters(ae, "encoder"); }, "--train-only must be decoder or temporal");
}

TEST(TemporalDecoder, ConfigRoundTripAndOldConfigsLoad) {
  const AutoencoderConfig t = tiny_config(4);
  const nlohmann::json j = autoencoder::autoencoder_config_to_json(t);
  EXPECT_EQ(j.at("temporal_frames"), 4);
  EXPECT_EQ(autoencoder::autoencoder_config_from_json(j).temporal_frames, 4);
  // An image autoencoder's config has no such key (as before) and loads as one.
  const nlohmann::json old = autoencoder::autoencoder_config_to_json(tiny_config());
  EXPECT_FALSE(old.contains("temporal_frames"));
  EXPECT_EQ(autoencoder::autoencoder_config_from_json(old).temporal_frames, 0);
  nlohmann::json one = j;
  one["temporal_frames"] = 1;
  expect_value_error([&] { autoencoder::autoencoder_config_from_json(one); }, "temporal_frames must be 0");

  // The folder round trip of a temporal autoencoder decodes clips identically.
  const testing::TempDir tmp;
  Generator g(8);
  Autoencoder ae(t, g, Device::cpu());
  perturb(ae, 10);
  autoencoder::save_autoencoder(ae, nlohmann::json::object(), tmp.path + "/t", false);
  const autoencoder::AutoencoderFolder back = autoencoder::load_autoencoder(tmp.path + "/t", Device::cpu());
  EXPECT_EQ(back.model->config().temporal_frames, 4);
  const Tensor z = testing::random_tensor({1, 4, 2, 2, 2}, 5, DType::f32);
  EXPECT_EQ(max_abs_diff(back.model->decode_clips(z), ae.decode_clips(z)), 0.0);
}

TEST(TemporalDecoder, FineTuningLowersTheClipLossOnMovingToy) {
  run::DataOptions dopt;
  dopt.frames = 3;
  dopt.canvas = 8;
  dopt.item_size = 4;
  const Dataset data = run::load_data(run::parse_data_spec("moving-toy"), dopt);
  Generator gi(1);
  Autoencoder image(tiny_config(), gi, Device::cpu());
  Generator g(2);
  const auto ae = autoencoder::with_temporal_decoder(image, 3, g);
  // A fixed batch and noise: the loss before and after, measured the same way.
  const std::int64_t n = std::min<std::int64_t>(4, data.n);
  std::vector<float> px(data.images.begin(), data.images.begin() + static_cast<std::ptrdiff_t>(n * data.image_bytes()));
  for (float& v : px) v = v / 127.5f - 1.0f;
  const Tensor x = Tensor::from_vector(px, {n, 3, 8, 8, 1});
  const Tensor eps = testing::random_tensor({n * 3, 4, 4, 2}, 3, DType::f32);
  auto clip_loss = [&] {
    NoGradGuard no_grad;
    return autoencoder::temporal_decoder_loss(*ae, x, eps, autoencoder::ReconstructionLoss::l1).reconstruction.item();
  };
  const double before = clip_loss();
  run::TemporalFinetuneArgs a;
  a.steps = 30;
  a.batch_size = 4;
  a.lr = 3e-3;
  a.log_every = 0;
  const run::TemporalFinetuneReport r = run::finetune_temporal_decoder(*ae, data, a);
  ASSERT_EQ(r.losses.size(), 30u);
  EXPECT_GT(r.trainable, 0);
  const double after = clip_loss();
  EXPECT_LT(after, 0.9 * before) << "clip loss " << before << " -> " << after;
  // The encoder is frozen: still the image autoencoder's, exactly.
  const auto ip = image.named_parameters();
  for (const auto& [name, p] : ae->named_parameters()) {
    if (name.rfind("encoder.", 0) != 0 && name.rfind("quant_conv.", 0) != 0) continue;
    const auto it = std::find_if(ip.begin(), ip.end(), [&](const nn::NamedTensor& q) { return q.first == name; });
    ASSERT_NE(it, ip.end());
    EXPECT_EQ(max_abs_diff(p, it->second), 0.0) << name;
  }
}

TEST(TemporalDecoder, CodecTakesOnlyADecoderOfItsOwnEncoder) {
  const testing::TempDir tmp;
  Generator g1(1), g2(2), gt(3);
  Autoencoder image(tiny_config(), g1, Device::cpu());
  Autoencoder other(tiny_config(), g2, Device::cpu());
  perturb(image, 4);
  autoencoder::save_autoencoder(image, nlohmann::json::object(), tmp.path + "/ae", false);
  autoencoder::save_autoencoder(other, nlohmann::json::object(), tmp.path + "/other", false);
  const auto video = autoencoder::with_temporal_decoder(image, 3, gt);
  perturb(*video, 6, 0.01);  // as a fine-tuned one: the encoder moved too, so it must be refused
  autoencoder::save_autoencoder(*video, nlohmann::json::object(), tmp.path + "/moved", false);
  const auto good = autoencoder::with_temporal_decoder(image, 3, gt);
  // A fine-tuned decoder: every decoder-side weight moved, the encoder untouched.
  for (const auto& [name, p] : video->named_parameters())
    if (autoencoder::is_decoder_parameter(name))
      for (auto& [gname, gp] : good->named_parameters())
        if (gname == name) gp.copy_from(p);
  autoencoder::save_autoencoder(*good, nlohmann::json::object(), tmp.path + "/good", false);

  run::LatentCodec codec(tmp.path + "/ae", Device::cpu());
  expect_value_error([&] { codec.use_clip_decoder(tmp.path + "/other"); }, "does not match the run's autoencoder");
  expect_value_error([&] { codec.use_clip_decoder(tmp.path + "/moved"); }, "its encoder weight");
  expect_value_error([&] { codec.use_clip_decoder(tmp.path + "/ae"); }, "an image decoder");
  expect_value_error([&] { codec.use_clip_decoder(tmp.path + "/nothing"); }, "is not an autoencoder folder");
  EXPECT_FALSE(codec.has_clip_decoder());
  codec.use_clip_decoder(tmp.path + "/good");
  EXPECT_TRUE(codec.has_clip_decoder());
  EXPECT_EQ(codec.clip_frames(), 3);
  const Tensor z = testing::random_tensor({1, 3, 2, 2, 2}, 9, DType::f32);
  EXPECT_EQ(max_abs_diff(codec.decode(z), good->decode_clips(z)), 0.0);  // scale_factor 1
  expect_value_error([&] { codec.decode(testing::random_tensor({1, 2, 2, 2, 2}, 9, DType::f32)); },
                     "decodes clips of 3 frames");
}

}  // namespace
}  // namespace ddpm
