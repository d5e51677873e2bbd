// models/unet/fourier_features.h: base-2 Fourier features of the network input (Kingma et al.
// 2021, "Variational Diffusion Models", the appendix on Fourier features; the authors' code,
// google-research/vdm model_vdm.py Base2FourierFeatures, used by its ScoreUNet).
//
// A likelihood model is judged on the fine detail of 8-bit pixels: a bin is 2/255 wide, so
// the network must resolve changes of z much smaller than its own input scale. VDM concatenates
// to z_t high-frequency features of each element z:
//   sin(2 pi 2^n z), cos(2 pi 2^n z),  n = n_min..n_max
// The authors' code uses n = 6, 7 (start 6, stop 8 exclusive, angle 2^n * 2 pi). One bin of
// our data scaling (1/127.5) turns the angle by ~pi at n = 6 and ~2 pi at n = 7, so the
// features swing over changes of z that the raw input barely shows.
//
// Layout (the code's): x [..., C] -> [..., 2 C K], K = n_max - n_min + 1 frequencies; the
// first C K channels are the sines, channel c at frequency index k in channel c K + k; the
// last C K the cosines in the same order. The UNet appends them after its input channels
// (unet.h UNetConfig::fourier_features) before conv_in.
//
// Any device and dtype: the values are computed in double on the host and copied back (an
// elementwise map of the input, negligible beside a UNet; there is no sin kernel to share).
// On the tape: d sin(w z)/dz = w cos(w z), d cos(w z)/dz = -w sin(w z), so a gradient
// reaches z (the VDM schedule's alpha and sigma shape z_t).
#pragma once

#include "engine/tensor.h"

namespace ddpm::unet {

// The channels the features add for C input channels: 2 C (n_max - n_min + 1).
std::int64_t fourier_feature_channels(std::int64_t channels, int n_min, int n_max);

// x [..., C] -> [..., 2 C K] as above. ValueError when n_min > n_max or x has no channels.
Tensor base2_fourier_features(const Tensor& x, int n_min, int n_max);

}  // namespace ddpm::unet
