// LoRA (models/nn/lora.h, models/run/lora_run.h): the adapters' targets and initialisation,
// finite-difference gradients of an adapted attention block in double, step 0 = the base,
// the frozen base getting no gradient, merged weights = base + adapters, and a LoRA run end to
// end (adapters-only checkpoints, the base bitwise unchanged, resume, the refusals).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "engine/io/safetensors.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/rng.h"
#include "models/diffusion/sampler.h"
#include "models/diffusion/schedule.h"
#include "models/nn/lora.h"
#include "models/run/checkpoint.h"
#include "models/run/finetune.h"
#include "models/run/lora_run.h"
#include "models/run/model_source.h"
#include "models/run/train_run.h"
#include "models/unet/blocks.h"
#include "models/unet/unet.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"
#include "support/tiny_run.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace fs = std::filesystem;
using namespace ddpm;
using ddpm::testing::expect_value_error;
using ddpm::testing::temp_run;

namespace {

// A tiny UNet with self-attention at 4x4 and spatial transformers (self- and cross-attention)
// over a 6-wide context: every kind of attention block LoRA adapts.
unet::UNetConfig attention_config() {
  unet::UNetConfig c = ddpm::testing::tiny_unet_config(8, 1);
  c.attention_resolutions = {4};
  c.num_heads = 2;
  c.context_dim = 6;
  return c;
}

// Adds N(0, 0.1^2) noise to every parameter: a trained model (a fresh one's zero-initialised
// output projections would hide what the attention blocks compute).
void perturb(const nn::Module& m, std::uint64_t seed) {
  std::uint64_t k = seed;
  for (const auto& [name, p] : m.named_parameters()) {
    Tensor dst = p;
    dst.copy_from(add(p.detach(), ddpm::testing::random_tensor(p.shape(), k++, p.dtype(), 0.1)));
  }
}

// Sets every lora_B to N(0, 0.1^2) values: an adapter that has trained a little.
void perturb_b(const nn::LoraSet& lora, std::uint64_t seed) {
  std::uint64_t k = seed;
  for (const auto& [name, p] : lora.named_parameters())
    if (name.find("lora_B") != std::string::npos) {
      Tensor dst = p;
      dst.copy_from(ddpm::testing::random_tensor(p.shape(), k++, p.dtype(), 0.1));
    }
}

}  // namespace

TEST(Lora, AdaptsEveryAttentionProjectionWithPeftsInitialisation) {
  Generator g(1);
  unet::UNet net(attention_config(), g, Device::cpu());
  Generator lg(2);
  const nn::LoraSet lora(net, 2, 4.0, lg);
  std::set<std::string> kinds;
  for (const std::string& t : lora.targets()) kinds.insert(t.substr(t.rfind(".to_") + 1));
  EXPECT_EQ(kinds, (std::set<std::string>{"to_q", "to_k", "to_v", "to_out.0"}));
  // Down, mid and up blocks: self-attention (attn1) and cross-attention (attn2) of each transformer.
  std::size_t attn2 = 0;
  for (const std::string& t : lora.targets()) attn2 += t.find(".attn2.") != std::string::npos;
  EXPECT_GT(attn2, 0u);
  EXPECT_EQ(lora.targets().size() % 4, 0u);
  for (const auto& [name, p] : lora.named_parameters()) {
    const std::vector<float> v = p.to_vector();
    if (name.find("lora_B") != std::string::npos) {
      for (float x : v) EXPECT_EQ(x, 0.0f) << name;
    } else {
      // A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5)); [r, in].
      const double bound = 1.0 / std::sqrt(static_cast<double>(p.dim(1)));
      double largest = 0;
      for (float x : v) largest = std::max(largest, std::fabs(double(x)));
      EXPECT_LE(largest, bound) << name;
      EXPECT_GT(largest, 0.5 * bound) << name;
      EXPECT_EQ(p.dim(0), 2) << name;
    }
  }
}

// The set finds its projections through Module::named_modules: the names it adapts are the
// model's own parameter names without ".weight", in named_parameters' order, and the set's
// destruction detaches every adapter (the model then runs as its base again).
TEST(Lora, TargetsFollowTheModelsParameterNamesAndDetachOnDestruction) {
  Generator g(3);
  unet::UNet net(attention_config(), g, Device::cpu());
  std::vector<std::string> projections;
  for (const auto& [name, p] : net.named_parameters()) {
    const std::string stem = name.size() > 7 ? name.substr(0, name.size() - 7) : "";
    for (const std::string& t : nn::kLoraTargetModules)
      if (name.compare(name.size() - 7, 7, ".weight") == 0 && stem.size() > t.size() &&
          stem.compare(stem.size() - t.size() - 1, t.size() + 1, "." + t) == 0)
        projections.push_back(stem);
  }
  std::size_t linears = 0;
  for (const auto& [name, m] : net.named_modules()) linears += dynamic_cast<nn::Linear*>(m) != nullptr;
  Generator lg(4);
  {
    const nn::LoraSet lora(net, 2, 2.0, lg);
    EXPECT_EQ(lora.targets(), projections);
    std::size_t adapted = 0;
    for (const auto& [name, m] : net.named_modules())
      if (auto* l = dynamic_cast<nn::Linear*>(m)) adapted += l->adapter != nullptr;
    EXPECT_EQ(adapted, projections.size());
    EXPECT_LT(adapted, linears);  // the time embedding's and the feed-forward's Linears stay plain
  }
  for (const auto& [name, m] : net.named_modules())
    if (auto* l = dynamic_cast<nn::Linear*>(m)) EXPECT_EQ(l->adapter, nullptr) << name;
  const nn::LoraSet again(net, 2, 2.0, lg);  // a detached model takes a new set
  EXPECT_EQ(again.targets().size(), projections.size());
}

TEST(Lora, AdaptedAttentionGradientsMatchFiniteDifferencesInDouble) {
  Generator g(3);
  unet::AttentionBlock block(8, 2, 4, 1e-5, g, Device::cpu());
  ddpm::testing::parameters_to_f64(block);
  for (auto [name, p] : block.named_parameters()) p.set_requires_grad(false);  // the frozen base
  Generator lg(4);
  const nn::LoraSet lora(block, 2, 3.0, lg);
  perturb_b(lora, 5);
  std::vector<Tensor> inputs = {ddpm::testing::param(ddpm::testing::random_tensor({2, 4, 4, 8}, 6))};
  for (const auto& [name, p] : lora.named_parameters()) inputs.push_back(ddpm::testing::param(p));
  ASSERT_EQ(inputs.size(), 9u);  // x and (A, B) of to_q, to_k, to_v, to_out.0
  auto f = [&](const std::vector<Tensor>& in) { return block.forward(in[0]); };
  EXPECT_TRUE(ddpm::testing::gradcheck(f, inputs, 1e-6, 1e-7, 1e-5));

  // The frozen base gets no gradient at all.
  sum(square(block.forward(inputs[0]))).backward();
  for (const auto& [name, p] : block.named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
}

// Step 0: fresh adapters (B = 0) add exactly nothing.
TEST(Lora, FreshAdaptersReproduceTheBaseExactly) {
  // (perturbed, so that every attention block reaches the output.)
  Generator g(7);
  unet::UNet net(attention_config(), g, Device::cpu());
  perturb(net, 70);
  const Tensor x = ddpm::testing::random_tensor({2, 8, 8, 1}, 8, DType::f32);
  const Tensor context = ddpm::testing::random_tensor({2, 3, 6}, 9, DType::f32);
  const std::vector<double> t = {3, 40};
  const std::vector<float> base = net.forward(x, t, {}, context, nn::Context{}).to_vector();
  Generator lg(10);
  const nn::LoraSet lora(net, 4, 8.0, lg);
  EXPECT_EQ(net.forward(x, t, {}, context, nn::Context{}).to_vector(), base);
}

// W + s B A merged into the weights computes what the base with its adapters computes, and the
// adapters leave with their set.
TEST(Lora, MergedWeightsMatchTheBaseWithAdapters) {
  Generator g(11);
  unet::UNet net(attention_config(), g, Device::cpu());
  ddpm::testing::parameters_to_f64(net);
  perturb(net, 110);
  const Tensor x = ddpm::testing::random_tensor({2, 8, 8, 1}, 12);
  const Tensor context = ddpm::testing::random_tensor({2, 3, 6}, 13);
  const std::vector<double> t = {3, 40};
  const Tensor base = net.forward(x, t, {}, context, nn::Context{});
  Tensor adapted, merged;
  {
    Generator lg(14);
    nn::LoraSet lora(net, 2, 2.0, lg);
    perturb_b(lora, 15);
    adapted = net.forward(x, t, {}, context, nn::Context{});
    lora.merge();
  }
  merged = net.forward(x, t, {}, context, nn::Context{});
  EXPECT_FALSE(ddpm::testing::all_close(adapted, base, 1e-6, 0)) << "the adapters changed nothing";
  EXPECT_TRUE(ddpm::testing::all_close(merged, adapted, 1e-12, 1e-10));
}

// The same in f32 over a whole DDIM chain (10 of T = 100 steps, fixed seed): the merged model's
// samples are the base-with-adapters' up to float rounding.
TEST(Lora, MergedWeightsSampleLikeTheBaseWithAdapters) {
  Generator g(18);
  unet::UNet net(attention_config(), g, Device::cpu());
  perturb(net, 180);
  const Tensor context = ddpm::testing::random_tensor({2, 3, 6}, 19, DType::f32);
  const diffusion::DenoiseFn fn = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    return net.forward(x, t, {}, context, nn::Context{});
  };
  const diffusion::DiffusionSchedule schedule(diffusion::betas_for(diffusion::NoiseSchedule::linear, 100));
  diffusion::SamplerConfig sc;
  sc.kind = diffusion::SamplerConfig::Kind::ddim;
  sc.respacing = "ddim10";
  auto draw = [&] {
    Generator sg(20);
    return diffusion::sample(schedule, fn, {2, 8, 8, 1}, {}, sc, sg);
  };
  const Tensor base = draw();
  Tensor adapted;
  {
    Generator lg(21);
    nn::LoraSet lora(net, 2, 2.0, lg);
    perturb_b(lora, 22);
    adapted = draw();
    lora.merge();
  }
  const Tensor merged = draw();
  EXPECT_FALSE(ddpm::testing::all_close(adapted, base, 1e-4, 0)) << "the adapters changed nothing";
  EXPECT_TRUE(ddpm::testing::all_close(merged, adapted, 1e-4, 1e-4));
}

// With activation checkpointing the adapters get the gradients they get without it. (A
// frozen block on an input without gradient is checkpointed because of its adapters,
// adapters_need_grad; without that it would run unsegmented, same gradients, more memory.)
TEST(Lora, GradientCheckpointingKeepsTheAdaptersGradients) {
  auto grads = [](bool recompute) {
    Generator g(23);
    unet::UNet net(attention_config(), g, Device::cpu());
    perturb(net, 230);
    ddpm::testing::parameters_to_f64(net);
    for (auto [name, p] : net.named_parameters()) p.set_requires_grad(false);  // the frozen base
    Generator lg(24);
    const nn::LoraSet lora(net, 2, 2.0, lg);
    perturb_b(lora, 25);
    for (const auto& [name, p] : lora.named_parameters()) ddpm::testing::param(p);
    const Tensor x = ddpm::testing::random_tensor({2, 8, 8, 1}, 26);
    const Tensor context = ddpm::testing::random_tensor({2, 3, 6}, 27);
    nn::Context ctx;
    ctx.recompute = recompute;
    sum(square(net.forward(x, {3, 40}, {}, context, ctx))).backward();
    std::vector<Tensor> out;
    for (const auto& [name, p] : lora.named_parameters()) out.push_back(p.grad());
    return out;
  };
  const std::vector<Tensor> plain = grads(false), checkpointed = grads(true);
  ASSERT_EQ(plain.size(), checkpointed.size());
  // A single frozen block on data (no input gradient): its adapters still train.
  Generator g(28);
  unet::AttentionBlock block(8, 2, 4, 1e-5, g, Device::cpu());
  for (auto [name, p] : block.named_parameters()) p.set_requires_grad(false);
  Generator lg(29);
  const nn::LoraSet lora(block, 2, 2.0, lg);
  perturb_b(lora, 30);
  nn::Context ctx;
  ctx.recompute = true;
  sum(square(block.forward(ddpm::testing::random_tensor({2, 4, 4, 8}, 31, DType::f32), ctx))).backward();
  for (const auto& [name, p] : lora.named_parameters()) EXPECT_TRUE(p.grad().defined()) << name << " got no gradient";
  for (std::size_t k = 0; k < plain.size(); ++k) {
    ASSERT_TRUE(checkpointed[k].defined()) << "adapter parameter " << k << " got no gradient";
    EXPECT_TRUE(ddpm::testing::all_close(checkpointed[k], plain[k], 1e-12, 1e-10)) << "adapter parameter " << k;
  }
}

TEST(Lora, RefusesBadRanksAndModelsWithoutAttention) {
  Generator g(16);
  nn::Linear plain(4, 4, g, Device::cpu());  // (every UNet attends in its middle block)
  Generator lg(17);
  expect_value_error([&] { nn::LoraSet(plain, 2, 2.0, lg); }, "no attention projections");
  unet::UNet net(attention_config(), g, Device::cpu());
  expect_value_error([&] { nn::LoraSet(net, 0, 1.0, lg); }, "rank must be at least 1");
  expect_value_error([&] { nn::LoraSet(net, 2, -1.0, lg); }, "alpha must be positive");
  expect_value_error([&] { nn::LoraSet(net, 64, 64.0, lg); }, "exceeds the width");
  const nn::LoraSet first(net, 2, 2.0, lg);
  expect_value_error([&] { nn::LoraSet(net, 2, 2.0, lg); }, "already has an adapter");
}

// A LoRA run end to end: only adapters are trained and saved, the frozen base is unchanged
// bit for bit, the merged model is base + (alpha / r) B A, and the run resumes.
TEST(Lora, RunTrainsOnlyTheAdapters) {
  run::TrainOptions b = ddpm::testing::tiny_run(temp_run("lora_base"));
  b.steps = 2;
  b.save_every = 2;
  run::train_run(b);

  run::TrainOptions o = ddpm::testing::tiny_run(temp_run("lora_run"));
  o.init_from = b.out;
  o.seed = 3;
  o.lora_rank = 2;
  o.lora_alpha = 4;
  o.lr = 1e-2;
  o.steps = 2;
  o.save_every = 2;
  o.num_channels = 0;  // ignored: the architecture comes from the base
  run::train_run(o);
  const std::string ck = run::checkpoint_dir(o.out, 2);
  const SafetensorsFile adapters = load_safetensors(ck + "/" + run::kEmaFile);
  for (const char* f : {run::kModelFile, run::kEmaFile}) {
    const SafetensorsFile file = load_safetensors(ck + "/" + f);
    ASSERT_FALSE(file.tensors.empty());
    for (const auto& [name, t] : file.tensors) EXPECT_NE(name.find(".lora_"), std::string::npos) << f << ": " << name;
  }
  EXPECT_EQ(run::read_run_config(o.out).at("lora").at("rank"), 2);

  // Merged: every weight but the projections' is the base's EMA bit for bit; a projection's
  // is W + 2 B A (alpha / r = 2), B and A the checkpoint's EMA adapters.
  const run::ModelSource base = run::open_model(b.out, Device::cpu(), true);
  const run::ModelSource merged = run::open_model(o.out, Device::cpu(), true);
  std::map<std::string, Tensor> base_params;
  for (const auto& [name, p] : base.net->named_parameters()) base_params[name] = p;
  int projections = 0;
  for (const auto& [name, p] : merged.net->named_parameters()) {
    const std::string stem = name.substr(0, name.size() - std::string(".weight").size());
    if (!adapters.contains(stem + ".lora_A.weight")) {
      EXPECT_EQ(p.to_vector(), base_params.at(name).to_vector()) << name << " is not the frozen base's";
      continue;
    }
    ++projections;
    const std::vector<float> a = adapters.get(stem + ".lora_A.weight").to_vector();
    const std::vector<float> bb = adapters.get(stem + ".lora_B.weight").to_vector();
    const std::vector<float> w = base_params.at(name).to_vector(), m = p.to_vector();
    const std::int64_t out = p.dim(0), in = p.dim(1);
    double worst = 0, largest_delta = 0;
    for (std::int64_t i = 0; i < out; ++i)
      for (std::int64_t j = 0; j < in; ++j) {
        double d = 0;
        for (int r = 0; r < 2; ++r) d += double(bb[i * 2 + r]) * a[r * in + j];
        largest_delta = std::max(largest_delta, std::fabs(2 * d));
        worst = std::max(worst, std::fabs(m[i * in + j] - (w[i * in + j] + 2 * d)));
      }
    EXPECT_LE(worst, 1e-6) << name;
    EXPECT_GT(largest_delta, 0.0) << name << ": the adapter did not train";
  }
  int blocks = 0;  // attention blocks of the base: one to_q each
  for (const auto& [name, p] : base_params) blocks += name.size() > 12 && name.rfind(".to_q.weight") == name.size() - 12;
  EXPECT_GT(blocks, 0);
  EXPECT_EQ(projections, 4 * blocks);  // to_q, to_k, to_v, to_out.0 of every attention block

  run::TrainOptions resumed = o;
  resumed.init_from = "";
  resumed.resume = "latest";
  resumed.steps = 3;
  EXPECT_EQ(run::train_run(resumed).steps_done, 3);
}

TEST(Lora, FlagRefusals) {
  run::TrainOptions o = ddpm::testing::tiny_run(temp_run("lora_refused"));
  o.lora_rank = 2;
  expect_value_error([&] { run::prepare_finetune(o); }, "--lora-rank 2 needs --init-from");
  o.lora_rank = 0;
  o.lora_alpha = 3;
  expect_value_error([&] { run::prepare_finetune(o); }, "--lora-alpha 3 needs --lora-rank");
  o.lora_rank = -1;
  expect_value_error([&] { run::prepare_finetune(o); }, "--lora-rank must be >= 0");
  EXPECT_FALSE(fs::exists(o.out));
}
