// models/unet/model_io.h: the UNet on disk.
//
// - Our config.json: every UNetConfig field by name; an unknown or missing key is an error.
//   A super-resolution model adds "super_res": {"low_res_size": L, "concat_channels": C}
//   (absent, and not allowed to be partial, for any other model), plus "cond_augment": MAX
//   for a conditioning-augmented model (absent when 0; its export to diffusers is refused:
//   UNet2DModel has no slot for its aug_embedding).
// - A cross-attention model (context_dim > 0) adds "context_dim" and "transformer_depth"
//   (both absent otherwise, so older configs read and write as before); config_to_diffusers
//   refuses it (UNet2DModel has no cross-attention): config_to_diffusers_conditional writes
//   it as a UNet2DConditionModel config instead. A pooled context (context_pool_heads > 0)
//   adds "context_pool_heads" (absent when 0), exported as addition_embed_type "text" with
//   addition_embed_type_num_heads; its add_embedding.* weights carry diffusers' names.
// - Super-resolution export: UNet2DModel in_channels = C + concat_channels, out_channels =
//   C (or 2C), which is how diffusers' own super-resolution UNets look, plus the private key
//   "_ddpm_super_res" (diffusers ignores "_" keys) that lets our import restore the split and
//   L. A UNet2DModel config with in_channels = 2 x out_channels and no such key is refused
//   (its low-res size is unknown); in_channels = out_channels = 2C cannot be told apart from
//   a plain 2C-channel model and is read as one.
// - diffusers' UNet2DModel config.json: import (when the architecture is one we build; the
//   error names the first unsupported field) and export.
// - diffusers' UNet2DConditionModel config.json (Stable Diffusion 1.x layout): import into a
//   context model and export. cross_attention_dim -> context_dim,
//   transformer_layers_per_block -> transformer_depth, CrossAttnDownBlock2D/CrossAttnUpBlock2D
//   -> attention (a spatial transformer) at that level, and attention_head_dim, which in THIS
//   class is the number of heads per block (diffusers' naming issue), -> num_heads (or
//   num_head_channels when the counts differ but the head width does not). Per-block lists
//   must agree at every cross-attention block (the engine builds them alike). Refused, by
//   name: use_linear_projection, only_cross_attention, dual_cross_attention, extra
//   embeddings (addition_embed_type other than null or "text", encoder_hid_dim,
//   time_cond_proj_dim, ...), any mid block
//   but UNetMidBlock2DCrossAttn, kernels other than 3, num_attention_heads (diffusers itself
//   refuses it). upcast_attention is accepted (a precision option, fp32 scores under fp16).
// - State dicts: names are diffusers' (the module names already match). Convolution
//   weights are stored in PyTorch's OIHW layout on disk (so the file is a valid
//   UNet2DModel checkpoint) and converted to/from our KRSC [O, kh, kw, I] in memory.
// - Loading checks the names and shapes and lists every missing, unexpected and
//   mismatched tensor in one message.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/io/safetensors.h"
#include "models/unet/unet.h"

namespace ddpm::unet {

nlohmann::json config_to_json(const UNetConfig& cfg);
UNetConfig config_from_json(const nlohmann::json& j);
// IoError "<what>: unknown key 'k'" / "missing key 'k'" unless j has exactly reference's
// keys: config files are read strictly, so a typo or a file of another kind is named.
void check_config_keys(const nlohmann::json& j, const nlohmann::json& reference, const char* what);

// diffusers' UNet2DModel / UNet2DConditionModel config <-> ours. Import throws ValueError
// naming what is not supported (e.g. "up_block_types do not mirror down_block_types").
// A UNet2DConditionModel config (_class_name) imports as a context model.
UNetConfig config_from_diffusers(const nlohmann::json& j);
nlohmann::json config_to_diffusers(const UNetConfig& cfg);
// A context model (context_dim > 0) as diffusers' UNet2DConditionModel config; ValueError for
// one without cross-attention or with options that class lacks (rescale_residual,
// resblock_updown, super-resolution, cond_augment, guidance_embedding). A head width
// (num_head_channels) is written as per-block head counts, which read back as a head count
// when only one block width has cross-attention (the same network).
nlohmann::json config_to_diffusers_conditional(const UNetConfig& cfg);

// The parameters of any module (UNet, noisy classifier, autoencoder) as host tensors under
// their names (diffusers' names for the UNet), convolutions in PyTorch's OIHW.
std::vector<std::pair<std::string, Tensor>> export_state_dict(const nn::Module& net);
// Copies a state dict (OIHW convolutions, any order, f32 or f64) into the module's
// parameters, strictly: every parameter present with its shape, nothing unexpected; else one
// ValueError naming `source` and listing what is missing, unexpected or mismatched.
void load_state_dict(nn::Module& net, const std::vector<std::pair<std::string, Tensor>>& tensors,
                     const std::string& source = "state dict");

// KRSC [O, kh, kw, I] <-> OIHW [O, I, kh, kw] for host tensors (f32 or f64).
Tensor krsc_to_oihw(const Tensor& w);
Tensor oihw_to_krsc(const Tensor& w);

// A diffusers model folder: config.json + diffusion_pytorch_model.safetensors.
void save_diffusers_folder(const UNet& net, const std::string& dir);
// Builds the model from the folder's config and loads its weights.
std::unique_ptr<UNet> load_diffusers_folder(const std::string& dir, Device device);

}  // namespace ddpm::unet
