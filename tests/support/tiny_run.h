// tests/support/tiny_run.h: the smallest ddpm-train run the tests make (16x16 toy shapes, a
// 2-level UNet of 8 channels with attention at 8x8 and dropout, so the dropout draws are
// part of what a resume must reproduce; T = 50, six steps of batch 4, a checkpoint every
// three), plus helpers to make a fresh run folder and to compare two checkpoints' tensors
// bit for bit. Used by the CPU and the GPU train-run tests alike.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

#include "engine/io/safetensors.h"
#include "models/run/train_run.h"
#include "support/temp_dir.h"

namespace ddpm::testing {

// A fresh folder for a run named `name` in this process's temp root (support/temp_dir.h: names
// like "control_base" that several tests use never meet across processes); runs that
// --overwrite moved aside earlier are removed too.
inline std::string temp_run(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path root = process_temp_root();
  const fs::path p = temp_path("train_run_" + name);
  for (const auto& e : fs::directory_iterator(root))
    if (e.path().filename().string().rfind("train_run_" + name + ".replaced-", 0) == 0) fs::remove_all(e.path());
  return p.string();
}

inline run::TrainOptions tiny_run(const std::string& out, Device device = Device::cpu()) {
  run::TrainOptions o;
  o.data = "toy";
  o.toy_count = 24;
  o.num_channels = 8;
  o.channel_mult = "1,2";
  o.num_res_blocks = 1;
  o.attention_resolutions = "8";
  o.norm_groups = 4;
  o.dropout = 0.1;
  o.diffusion_steps = 50;
  o.batch_size = 4;
  o.lr = 1e-3;
  o.warmup_steps = 2;
  o.ema_rate = 0.9;
  o.steps = 6;
  o.save_every = 3;
  o.sample_every = 0;
  o.log_every = 2;
  o.num_samples = 4;
  o.sample_steps = 5;
  o.out = out;
  o.log = nullptr;
  o.device = device;
  return o;
}

// tiny_run with text conditioning (models/text/text_conditioned.h): captions generated for the
// toy shapes, a one-layer text encoder of width 8 with 2 heads, 8 tokens per caption.
inline run::TrainOptions tiny_text_run(const std::string& out, Device device = Device::cpu()) {
  run::TrainOptions o = tiny_run(out, device);
  o.text.enabled = true;
  o.text.width = 8;
  o.text.layers = 1;
  o.text.heads = 2;
  o.text.context_length = 8;
  return o;
}

// The teacher the distillation resume suites share, trained once per call in temp_run(name):
// T = 32, v-prediction, 4 toy classes (null-label dropout 0.2), tiny_run's UNet dropout 0.1,
// random flips, 4 steps of lr 2e-3. Returns the run folder.
inline std::string tiny_class_v_teacher(const std::string& name) {
  run::TrainOptions o = tiny_run(temp_run(name));
  o.diffusion_steps = 32;
  o.class_cond = true;
  o.class_dropout = 0.2;
  o.random_flip = true;
  o.predict = "v";
  o.sample_steps = 8;
  o.steps = 4;
  o.save_every = 4;
  o.lr = 2e-3;
  run::train_run(o);
  return o.out;
}

// Every tensor of two safetensors files is equal, bit for bit.
inline void expect_same_tensors(const std::string& a, const std::string& b) {
  const SafetensorsFile fa = load_safetensors(a), fb = load_safetensors(b);
  ASSERT_EQ(fa.tensors.size(), fb.tensors.size()) << a;
  for (std::size_t i = 0; i < fa.tensors.size(); ++i) {
    const auto& [name, ta] = fa.tensors[i];
    const Tensor& tb = fb.get(name);
    ASSERT_EQ(ta.shape(), tb.shape()) << name;
    EXPECT_EQ(ta.to_vector(), tb.to_vector()) << a << ": " << name << " differs";
  }
}

// The largest |a - b| over every element of every tensor of two safetensors files with the
// same names and shapes.
inline double max_abs_difference(const std::string& a, const std::string& b) {
  const SafetensorsFile fa = load_safetensors(a), fb = load_safetensors(b);
  EXPECT_EQ(fa.tensors.size(), fb.tensors.size()) << a;
  double worst = 0.0;
  for (const auto& [name, ta] : fa.tensors) {
    const std::vector<float> va = ta.to_vector(), vb = fb.get(name).to_vector();
    EXPECT_EQ(va.size(), vb.size()) << name;
    for (std::size_t i = 0; i < va.size() && i < vb.size(); ++i)
      worst = std::max(worst, static_cast<double>(std::fabs(va[i] - vb[i])));
  }
  return worst;
}

}  // namespace ddpm::testing
