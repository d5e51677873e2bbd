// Prompt-to-Prompt (models/unet/attention_control.h, models/diffusion/prompt_to_prompt.h,
// models/run/prompt_to_prompt_run.h): the explicit-probabilities attention against the fused
// op, the hook's no-controller path bit for bit, the edits (swap, self injection,
// re-weighting) inspected through the controller, the sampler's limits (c = s = 1 with one
// prompt, c = s = 0 against a plain sample), and the refusals.
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/ops/attention.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/rng.h"
#include "models/diffusion/prompt_to_prompt.h"
#include "models/diffusion/sampler.h"
#include "models/run/edit_run.h"
#include "models/run/model_source.h"
#include "models/run/prompt_to_prompt_run.h"
#include "models/unet/attention_control.h"
#include "support/tiny_model.h"
#include "support/tiny_run.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

using diffusion::PromptToPromptConfig;
using diffusion::PromptToPromptController;

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_double_vector(), y = b.to_double_vector();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// A trained-for-two-steps text run, its weights perturbed (a fresh proj_out is zero, which
// would make every transformer block the identity and hide the attention).
struct TextModel {
  run::ModelSource src;
  diffusion::DiffusionSchedule base;
  TextModel() : base(diffusion::linear_betas(40)) {
    run::TrainOptions o = testing::tiny_text_run(testing::temp_run("prompt_to_prompt"));
    o.steps = 2;
    o.diffusion_steps = 40;
    run::train_run(o);
    src = run::open_model(o.out, Device::cpu());
    Generator g(5);
    testing::perturb_weights(*src.text, g);
  }
  diffusion::DenoiseFn denoiser(const std::vector<std::string>& prompts) const {
    return src.text->denoiser(prompts, "", {});
  }
  Shape shape(std::int64_t n) const {
    const auto& c = src.net->config();
    return {n, c.image_size, c.image_size, c.in_channels};
  }
};

const TextModel& text_model() {
  static const TextModel m;
  return m;
}

diffusion::SamplerConfig ddim_config(int steps, double guidance = 1.0) {
  diffusion::SamplerConfig c;
  c.kind = diffusion::SamplerConfig::Kind::ddim;
  c.respacing = "ddim" + std::to_string(steps);
  c.guidance_scale = guidance;
  c.num_classes = 2;  // the text denoiser's table {source, edit}; label 2 = the empty caption
  return c;
}

// Edits nothing; counts its calls by kind.
struct PassThrough : unet::AttentionController {
  int cross = 0, self = 0;
  Tensor edit(const Tensor& p, const unet::AttentionSite& site) override {
    (site.cross ? cross : self) += 1;
    return p;
  }
};

TEST(PromptToPrompt, ExplicitProbabilitiesEqualTheFusedAttention) {
  Generator g(3);
  for (const std::int64_t Sk : {3, 7, 16}) {
    const Tensor q = randn({2, 16, 8}, g), k = randn({2, Sk, 8}, g), v = randn({2, Sk, 8}, g);
    const Tensor p = unet::attention_probabilities(q, k, 2);  // [2, 2, 16, Sk]
    ASSERT_EQ(p.shape(), (Shape{2, 2, 16, Sk}));
    const Tensor ones = sum(p, {3});
    EXPECT_LT(max_abs_diff(ones, Tensor::full(ones.shape(), 1.0)), 1e-6) << "rows of P sum to 1";
    const Tensor explicit_out = unet::apply_attention_probabilities(p, v, 2);
    EXPECT_LT(max_abs_diff(explicit_out, attention(q, k, v, 2)), 1e-6) << "Sk = " << Sk;
  }
  // Scores far beyond exp's f32 range (|s| ~ 1e3): the row-max shift keeps P finite and right.
  const Tensor q = scale(randn({1, 5, 4}, g), 60.0), k = scale(randn({1, 5, 4}, g), 60.0), v = randn({1, 5, 4}, g);
  const Tensor out = unet::apply_attention_probabilities(unet::attention_probabilities(q, k, 1), v, 1);
  for (double x : out.to_double_vector()) ASSERT_TRUE(std::isfinite(x));
  EXPECT_LT(max_abs_diff(out, attention(q, k, v, 1)), 1e-5);
}

TEST(PromptToPrompt, HookWithAPassThroughControllerMatchesTheFusedPathAndDetachesBitForBit) {
  const TextModel& m = text_model();
  const diffusion::DenoiseFn net = m.denoiser({"a square", "a disc"});
  Generator g(4);
  const Tensor x = randn(m.shape(2), g);
  NoGradGuard no_grad;
  const Tensor before = net(x, {30.0, 30.0}, {0, 1});
  PassThrough pass;
  Tensor hooked;
  {
    unet::ScopedAttentionController hook(*m.src.net, pass);
    EXPECT_GT(hook.sites(), 0);
    hooked = net(x, {30.0, 30.0}, {0, 1});
  }
  EXPECT_GT(pass.cross, 0);
  EXPECT_EQ(pass.cross, pass.self) << "one attn1 and one attn2 per transformer block";
  const double scale_out = std::max(1.0, max_abs_diff(before, Tensor::zeros(before.shape())));
  EXPECT_LT(max_abs_diff(before, hooked), 1e-5 * scale_out);
  EXPECT_GT(max_abs_diff(before, Tensor::zeros(before.shape())), 1e-3) << "the network output is not trivial";
  // Detached: the fused op again, the same bits as before the hook was ever set.
  const Tensor after = net(x, {30.0, 30.0}, {0, 1});
  EXPECT_EQ(before.to_double_vector(), after.to_double_vector());
  // ... and the sampler's output too.
  Generator g1(8), g2(8);
  const diffusion::SamplerConfig c = ddim_config(2);
  const Tensor s1 = diffusion::sample(m.base, net, m.shape(1), {1}, c, g1);
  { unet::ScopedAttentionController hook(*m.src.net, pass); }
  const Tensor s2 = diffusion::sample(m.base, net, m.shape(1), {1}, c, g2);
  EXPECT_EQ(s1.to_double_vector(), s2.to_double_vector());
}

TEST(PromptToPrompt, ControllerRefusesGradMode) {
  const TextModel& m = text_model();
  const diffusion::DenoiseFn net = m.denoiser({"a square"});
  PassThrough pass;
  unet::ScopedAttentionController hook(*m.src.net, pass);
  Generator g(1);
  testing::expect_value_error([&] { net(randn(m.shape(1), g), {3.0}, {0}); }, "sampling only");
}

TEST(PromptToPrompt, ReweightingScalesTheEditRowsColumnOnly) {
  PromptToPromptConfig pc;
  pc.cross_replace = 0;
  pc.self_replace = 0;
  pc.reweight_token = 2;
  pc.reweight_scale = 3.0;
  PromptToPromptController c(pc, 1, 4);
  c.set_step(0);
  Generator g(2);
  const Tensor p = randn({4, 2, 3, 5}, g);  // [source; edit; 2 unconditional] rows
  const std::string name = "blk.attn2";
  const std::vector<double> in = p.to_double_vector(),
                            out = c.edit(p, unet::AttentionSite{name, true, 2}).to_double_vector();
  const std::size_t per_row = 2 * 3 * 5;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const bool edit_row = i / per_row == 1, column = i % 5 == 2;
    // f32 products are correctly rounded: the same as rounding the exact product to float.
    EXPECT_EQ(out[i], edit_row && column ? double(float(3.0 * in[i])) : in[i]) << "at " << i;
  }
  // Self-attention maps are never re-weighted.
  const Tensor self_out = c.edit(p, unet::AttentionSite{name, false, 2});
  EXPECT_EQ(self_out.to_double_vector(), in);
}

TEST(PromptToPrompt, RefinementAlignmentMapsEditTokensToSourceTokens) {
  using diffusion::refinement_token_map;
  using V = std::vector<std::int64_t>;
  // Columns [<bos>, words, <eos>]; -1 = an added word.
  EXPECT_EQ(refinement_token_map({"a", "square"}, {"a", "red", "square"}), (V{0, 1, -1, 2, 3}));
  EXPECT_EQ(refinement_token_map({"a", "light", "square"}, {"big", "a", "light", "big", "square", "now"}),
            (V{0, -1, 1, 2, -1, 3, -1, 4}));
  EXPECT_EQ(refinement_token_map({"a", "a"}, {"a", "b", "a"}), (V{0, 1, -1, 2, 3})) << "leftmost places";
  EXPECT_EQ(refinement_token_map({"a", "square"}, {"a", "square"}), (V{0, 1, 2, 3})) << "nothing added";
  EXPECT_TRUE(refinement_token_map({"light", "square"}, {"square", "light", "big"}).empty()) << "out of order";
  EXPECT_TRUE(refinement_token_map({"a", "light", "square"}, {"a", "dark", "big", "square"}).empty())
      << "'light' is missing";
}

TEST(PromptToPrompt, RefinementGivesAlignedColumnsTheSourcesMapsAndNewColumnsTheirOwn) {
  PromptToPromptConfig pc;
  pc.cross_replace = 0.5;
  pc.self_replace = 0;
  pc.token_map = {0, 1, -1, 2, 3};  // "a square" -> "a red square"; column 5 (padding) maps to 5
  PromptToPromptController c(pc, 2, 4);
  Generator g(12);
  const Tensor p = randn({8, 2, 3, 6}, g);  // [source 2; edit 2; unconditional 4] rows, Sk = 6
  const std::string name = "blk.attn2";
  const std::vector<double> in = p.to_double_vector();
  const std::size_t Sk = 6, per_row = 2 * 3 * Sk;
  const std::vector<std::int64_t> from = {0, 1, -1, 2, 3, 5};
  c.set_step(1);  // inside the window of floor(0.5 * 4) = 2 steps
  const std::vector<double> out = c.edit(p, unet::AttentionSite{name, true, 2}).to_double_vector();
  ASSERT_EQ(out.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const std::size_t row = i / per_row, col = i % Sk;
    if (row < 2 || row >= 4) {
      EXPECT_EQ(out[i], in[i]) << "source and unconditional rows are not edited, at " << i;
    } else if (from[col] < 0) {
      EXPECT_EQ(out[i], in[i]) << "the added word keeps the edit's own map, at " << i;
    } else {
      // The same pair's source row (row - 2), same head and query, column from[col].
      const std::size_t src = i - 2 * per_row - col + static_cast<std::size_t>(from[col]);
      EXPECT_EQ(out[i], in[src]) << "an aligned column takes the source's map, at " << i;
    }
  }
  c.set_step(2);  // past the window
  EXPECT_EQ(c.edit(p, unet::AttentionSite{name, true, 2}).to_double_vector(), in);
  // A map that points outside the context is refused by name.
  pc.token_map = {0, 9};
  PromptToPromptController bad(pc, 2, 4);
  testing::expect_value_error([&] { bad.edit(p, unet::AttentionSite{name, true, 2}); }, "outside the 6 context");
}

TEST(PromptToPrompt, RefinementThroughTheModelsCrossAttention) {
  const TextModel& m = text_model();
  const std::vector<std::string> source = {"a", "square"}, edit = {"a", "dark", "square"};
  const diffusion::DenoiseFn net = m.denoiser({"a square", "a dark square"});
  PromptToPromptConfig pc;
  pc.cross_replace = 1;
  pc.self_replace = 0;
  pc.token_map = diffusion::refinement_token_map(source, edit);
  ASSERT_EQ(pc.token_map, (std::vector<std::int64_t>{0, 1, -1, 2, 3}));
  PromptToPromptController c(pc, 1, 2);
  c.set_recording(true);
  Generator g(13);
  diffusion::prompt_to_prompt_sample(m.base, net, *m.src.net, m.shape(1), ddim_config(2), &c, g);
  int cross_sites = 0;
  for (const auto& [name, e] : c.edited_maps()) {
    if (name.find("attn2") == std::string::npos) continue;
    ++cross_sites;
    const Tensor& given = c.given_maps().at(name);  // [source; edit], [2, heads, Sq, 8]
    const Tensor src = slice(given, 0, 0, 1), own = slice(given, 0, 1, 1), out = slice(e, 0, 1, 1);
    const std::vector<std::int64_t> from = {0, 1, -1, 2, 3, 5, 6, 7};
    for (std::int64_t j = 0; j < 8; ++j) {
      const Tensor expected = from[j] < 0 ? slice(own, 3, j, 1) : slice(src, 3, from[j], 1);
      EXPECT_EQ(slice(out, 3, j, 1).to_double_vector(), expected.to_double_vector()) << name << " column " << j;
    }
    EXPECT_GT(max_abs_diff(slice(own, 3, 3, 1), slice(src, 3, 2, 1)), 1e-6)
        << name << ": 'square' attends differently in the two prompts, so taking the source's did something";
  }
  EXPECT_GT(cross_sites, 0);
}

TEST(PromptToPrompt, SelfInjectionOnlyAtSitesWithinTheTokenLimit) {
  PromptToPromptConfig pc;
  pc.cross_replace = 0;
  pc.self_replace = 1;
  pc.self_replace_max_tokens = 4;
  PromptToPromptController c(pc, 1, 2);
  Generator g(14);
  const std::string name = "blk.attn1";
  for (const std::int64_t Sq : {4, 9}) {  // 2 x 2 (injected) and 3 x 3 (kept) maps
    const Tensor p = randn({2, 1, Sq, Sq}, g);
    const Tensor out = c.edit(p, unet::AttentionSite{name, false, 1});
    const Tensor expected_edit = Sq <= 4 ? slice(p, 0, 0, 1) : slice(p, 0, 1, 1);
    EXPECT_EQ(slice(out, 0, 1, 1).to_double_vector(), expected_edit.to_double_vector()) << "Sq = " << Sq;
  }
  pc.self_replace_max_tokens = 0;  // every layer
  PromptToPromptController all(pc, 1, 2);
  const Tensor p = randn({2, 1, 9, 9}, g);
  EXPECT_EQ(slice(all.edit(p, unet::AttentionSite{name, false, 1}), 0, 1, 1).to_double_vector(),
            slice(p, 0, 0, 1).to_double_vector());
  pc.self_replace_max_tokens = -1;
  testing::expect_value_error([&] { PromptToPromptController(pc, 1, 2); }, "--self-replace-max-tokens");
  // Through the model: its transformer blocks sit at 8 x 8 = 64 tokens.
  const TextModel& m = text_model();
  const diffusion::DenoiseFn net = m.denoiser({"a light square", "a dark disc"});
  for (const std::int64_t limit : {63, 64}) {
    pc.self_replace_max_tokens = limit;
    PromptToPromptController mc(pc, 1, 2);
    mc.set_recording(true);
    Generator gs(15);
    diffusion::prompt_to_prompt_sample(m.base, net, *m.src.net, m.shape(1), ddim_config(2), &mc, gs);
    int self_sites = 0;
    for (const auto& [site, e] : mc.edited_maps()) {
      if (site.find("attn1") == std::string::npos) continue;
      ++self_sites;
      const Tensor& given = mc.given_maps().at(site);
      ASSERT_EQ(given.dim(2), 64) << site;
      const Tensor expected = limit >= 64 ? slice(given, 0, 0, 1) : slice(given, 0, 1, 1);
      EXPECT_EQ(slice(e, 0, 1, 1).to_double_vector(), expected.to_double_vector()) << site << ", limit " << limit;
    }
    EXPECT_GT(self_sites, 0);
  }
}

TEST(PromptToPrompt, WindowsFollowTheFractionsOfTheSteps) {
  PromptToPromptConfig pc;
  pc.cross_replace = 0.8;
  pc.self_replace = 0.4;
  PromptToPromptController c(pc, 1, 10);
  EXPECT_EQ(c.cross_steps(), 8);
  EXPECT_EQ(c.self_steps(), 4);
  c.set_step(3);
  EXPECT_TRUE(c.replaces_self());
  c.set_step(4);
  EXPECT_FALSE(c.replaces_self());
  EXPECT_TRUE(c.replaces_cross());
  c.set_step(8);
  EXPECT_FALSE(c.replaces_cross());
  Generator g(3);
  const Tensor p = randn({2, 1, 2, 3}, g);
  const std::string name = "x";
  EXPECT_EQ(c.edit(p, unet::AttentionSite{name, true, 1}).to_double_vector(), p.to_double_vector())
      << "outside both windows the maps pass unchanged";
}

TEST(PromptToPrompt, SwapWithFullReplacementGivesTheEditTheSourcesMaps) {
  const TextModel& m = text_model();
  const diffusion::DenoiseFn net = m.denoiser({"a light square", "a dark disc"});
  PromptToPromptConfig pc;
  pc.cross_replace = 1;
  pc.self_replace = 1;
  PromptToPromptController c(pc, 2, 4);
  c.set_recording(true);
  Generator g(6);
  const Tensor pair =
      diffusion::prompt_to_prompt_sample(m.base, net, *m.src.net, m.shape(2), ddim_config(4, 2.0), &c, g);
  ASSERT_FALSE(c.edited_maps().empty());
  int cross_sites = 0;
  for (const auto& [name, e] : c.edited_maps()) {
    const Tensor& given = c.given_maps().at(name);
    ASSERT_EQ(e.dim(0), 8) << "guided: [source 2; edit 2; unconditional 4]";
    EXPECT_EQ(slice(e, 0, 2, 2).to_double_vector(), slice(e, 0, 0, 2).to_double_vector()) << name;
    EXPECT_EQ(slice(e, 0, 4, 4).to_double_vector(), slice(given, 0, 4, 4).to_double_vector())
        << name << ": the unconditional rows are not edited";
    if (name.find("attn2") != std::string::npos) {
      ++cross_sites;
      EXPECT_GT(max_abs_diff(slice(given, 0, 2, 2), slice(given, 0, 0, 2)), 1e-6)
          << name << ": the edit's own cross maps differ (another prompt), so the replacement did something";
    }
  }
  EXPECT_GT(cross_sites, 0);
  // The text still differs through v (the values come from the edit's own context).
  EXPECT_GT(max_abs_diff(slice(pair, 0, 0, 2), slice(pair, 0, 2, 2)), 1e-4);
}

TEST(PromptToPrompt, OnePromptWithFullReplacementGivesEqualRows) {
  const TextModel& m = text_model();
  const diffusion::DenoiseFn net = m.denoiser({"a square", "a square"});
  PromptToPromptConfig pc;
  pc.cross_replace = 1;
  pc.self_replace = 1;
  PromptToPromptController c(pc, 2, 4);
  Generator g(7);
  const Tensor pair =
      diffusion::prompt_to_prompt_sample(m.base, net, *m.src.net, m.shape(2), ddim_config(4, 2.0), &c, g);
  EXPECT_LT(max_abs_diff(slice(pair, 0, 0, 2), slice(pair, 0, 2, 2)), 1e-6);
}

TEST(PromptToPrompt, NoReplacementEqualsAPlainSampleOfTheEditPrompt) {
  const TextModel& m = text_model();
  for (const bool ddpm : {false, true}) {
    diffusion::SamplerConfig sc = ddim_config(4, 2.0);
    if (ddpm) {
      sc.kind = diffusion::SamplerConfig::Kind::ddpm;
      sc.respacing = "4";
    }
    PromptToPromptConfig pc;
    pc.cross_replace = 0;
    pc.self_replace = 0;
    PromptToPromptController c(pc, 2, 4);
    Generator g(9), g_plain(9);
    const diffusion::DenoiseFn net = m.denoiser({"a square", "a dark disc"});
    const Tensor pair = diffusion::prompt_to_prompt_sample(m.base, net, *m.src.net, m.shape(2), sc, &c, g);
    // The edit prompt (label 1) alone from the same seed.
    const Tensor plain = diffusion::sample(m.base, net, m.shape(2), {1, 1}, sc, g_plain);
    EXPECT_LT(max_abs_diff(slice(pair, 0, 2, 2), plain), 1e-4) << (ddpm ? "ddpm" : "ddim");
    EXPECT_GT(max_abs_diff(slice(pair, 0, 0, 2), plain), 1e-3) << "the source rows are another prompt's";
  }
}

TEST(PromptToPrompt, Refusals) {
  run::EditOptions o;
  o.command = "prompt2prompt";
  o.checkpoint = "run";
  o.out = testing::temp_path("p2p_refusal_out");
  o.prompts = {"a light square"};
  o.edit_prompt = "a light big disc";
  // 'square' is not among the edit's words: neither a swap nor a refinement.
  testing::expect_value_error([&] { run::prompt_to_prompt_config(o); }, "[a, light, big, disc]");
  testing::expect_value_error([&] { run::prompt_to_prompt_config(o); }, "[a, light, square]");
  testing::expect_value_error([&] { run::prompt_to_prompt_config(o); }, "nor a refinement");
  o.cross_replace = 0;  // self-attention injection alone needs no token correspondence
  EXPECT_NO_THROW(run::prompt_to_prompt_config(o));
  o.cross_replace = 0.8;
  o.edit_prompt = "a light big square";  // refinement: one word added
  EXPECT_EQ(run::prompt_to_prompt_config(o).token_map, (std::vector<std::int64_t>{0, 1, 2, -1, 3, 4}));
  o.edit_prompt = "a dark square";
  EXPECT_TRUE(run::prompt_to_prompt_config(o).token_map.empty()) << "same token count: word swap";
  o.edit_prompt = "a dark square";
  o.cross_replace = 1.5;
  testing::expect_value_error([&] { run::check_edit_options(o); }, "--cross-replace must lie in [0, 1]");
  o.cross_replace = 0.8;
  o.self_replace = -0.1;
  testing::expect_value_error([&] { run::check_edit_options(o); }, "--self-replace must lie in [0, 1]");
  o.self_replace = 0.4;
  o.self_replace_max_tokens = -1;
  testing::expect_value_error([&] { run::check_edit_options(o); }, "--self-replace-max-tokens must be >= 0");
  o.self_replace_max_tokens = 64;
  o.reweight = "disc=2";
  testing::expect_value_error([&] { run::prompt_to_prompt_config(o); }, "'disc' is not a word of --edit-prompt");
  o.reweight = "dark";
  testing::expect_value_error([&] { run::check_edit_options(o); }, "WORD=SCALE");
  o.reweight = "dark=-1";
  testing::expect_value_error([&] { run::check_edit_options(o); }, "SCALE must be a number >= 0");
  o.reweight = "Dark=2.5";
  const PromptToPromptConfig pc = run::prompt_to_prompt_config(o);
  EXPECT_EQ(pc.reweight_token, 2) << "<bos> a dark square: 'dark' is column 2";
  EXPECT_DOUBLE_EQ(pc.reweight_scale, 2.5);
  o.edit_prompt = "";
  testing::expect_value_error([&] { run::check_edit_options(o); }, "needs --edit-prompt");
  o.edit_prompt = "a dark square";
  o.sampler = "heun";
  testing::expect_value_error([&] { run::check_edit_options(o); }, "auto, ddim or ddpm for prompt2prompt");
  o.sampler = "ddim";
  o.prompts = {"a", "b"};
  testing::expect_value_error([&] { run::check_edit_options(o); }, "exactly one --prompt");
  // A model without text conditioning.
  o.prompts = {"a light square"};
  run::ModelSource plain;
  Generator g(1);
  plain.net = std::make_unique<unet::UNet>(testing::tiny_unet_config(8, 1), g, Device::cpu());
  testing::expect_value_error([&] { run::run_edit(o, plain); }, "is not text-conditioned");
  EXPECT_FALSE(std::filesystem::exists(o.out));
}

}  // namespace
}  // namespace ddpm
