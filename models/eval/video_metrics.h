// models/eval/video_metrics.h: temporal-consistency metrics of video clips, the measures
// behind `ddpm-eval video`.
//
// There is no FVD here (it needs an I3D network trained on Kinetics, which we do not have
// offline), so we measure what a clip of the moving-* datasets (models/data/moving.h) must
// satisfy by construction: its item TRANSLATES and KEEPS ITS PIXELS. Clips are uint8
// [N, F, H, W, C] (grey or RGB; Dataset with frames = F >= 2), read as intensities
// x = byte / 255 in [0, 1]. For clip i and each consecutive pair of frames (f, f + 1):
//
//   frame_diff       mean_p |x_{f+1}(p) - x_f(p)|                       (p over H, W, C)
//   motion_residual  min over integer shifts d in [-S, S]^2 of
//                      mean_p |x_{f+1}(p) - x_f(p - d)|
//                    where x_f(p - d) is 0 when p - d falls outside the frame (the black
//                    canvas the items move on). The motion-compensated frame difference:
//                    a translation by d inside the canvas (|d_x|, |d_y| <= S) gives exactly 0.
//   mass_drift       std_f(m_f) / mean_f(m_f), m_f = sum_p x_f(p) the frame's total
//                    intensity ("mass"), std the population one (divided by F); 0 for a
//                    clip whose mean mass is 0 (an all-black clip keeps its pixels)
//
// frame_diff and motion_residual are averaged over the N (F - 1) pairs, mass_drift over the
// N clips. frame_diff > 0 says the clip moves at all; motion_residual near 0 says the motion
// is a translation; mass_drift near 0 says the item neither fades, grows nor multiplies.
// The moving-* clips round continuous positions to pixels and reflect at the walls, so a
// real clip's per-frame step is at most ceil(max_speed) = 3 px: the default S = 4 covers it.
//
// Cost: N (F - 1) (2S + 1)^2 H W C absolute differences (81 shifts at S = 4).
#pragma once

#include <cstdint>
#include <string>

#include "models/data/dataset.h"

namespace ddpm::eval {

struct VideoMetrics {
  std::int64_t clips = 0;
  double frame_diff = 0;       // mean |x_{f+1} - x_f|
  double motion_residual = 0;  // the same after the best shift in [-S, S]^2
  double mass_drift = 0;       // mean over clips of std_f(mass) / mean_f(mass)
};

// mean_p |next(p) - prev(p - (dx, dy))| of two H x W x C frames (bytes read as byte / 255),
// prev read as 0 outside the frame. dx moves right (along W), dy down (along H).
double shifted_frame_difference(const std::uint8_t* prev, const std::uint8_t* next, std::int64_t height,
                                std::int64_t width, std::int64_t channels, int dx, int dy);

// The three metrics of `clips` with shifts up to max_shift (S >= 0). ValueError when clips is
// not video (frames < 2), holds no clip, or max_shift is negative.
VideoMetrics video_metrics(const Dataset& clips, int max_shift);

// The incoherent baseline: clip i of the result holds, as its frame f, frame f of clip
// (i + f) mod N. Every frame is a real frame at its real time index, but consecutive frames
// come from different clips. Labels and captions are dropped (a clip has no single source).
// ValueError when clips is not video or holds fewer than 2 clips (nothing to shuffle with).
Dataset shuffled_clips(const Dataset& clips);

// The clips of a samples file as ddpm-sample writes it for a video run: "arr_0" (or
// "images") uint8 [N, F, H, W, C] with F >= 2. IoError when the file is missing or not a
// readable .npz; ValueError, naming `flag`, the file and the array, when the array is not
// 5-D uint8, has F < 2, or holds no clip.
Dataset load_sample_clips(const std::string& path, const std::string& flag = "--samples");

}  // namespace ddpm::eval
