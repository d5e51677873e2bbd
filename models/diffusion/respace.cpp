// models/diffusion/respace.cpp: parsing of the step strings and the respaced schedule
// (see respace.h for the rules and why every form keeps T-1).
#include "models/diffusion/respace.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "engine/error.h"

namespace ddpm::diffusion {

namespace {

// A positive decimal integer, or a ValueError naming the whole string.
std::int64_t parse_count(const std::string& token, const std::string& whole) {
  DDPM_CHECK(!token.empty() && token.size() <= 12 &&
                 std::all_of(token.begin(), token.end(), [](char c) { return c >= '0' && c <= '9'; }),
             "space_timesteps: '" << token << "' in '" << whole << "' is not a step count (a positive integer)");
  std::int64_t n = std::stoll(token);
  DDPM_CHECK(n > 0, "space_timesteps: a step count of 0 in '" << whole << "' keeps no timesteps");
  return n;
}

Timesteps ddim_spacing(std::int64_t T, const std::string& counts) {
  std::int64_t n = parse_count(counts.substr(4), counts);
  DDPM_CHECK(n <= T, "space_timesteps: '" << counts << "' asks for " << n << " steps but there are only " << T);
  DDPM_CHECK(T % n == 0, "space_timesteps: '" << counts << "' needs an exact integer stride, but " << T
                                               << " timesteps do not divide into " << n << " steps");
  std::int64_t stride = T / n;
  Timesteps kept;
  for (std::int64_t i = n - 1; i >= 0; --i) kept.push_back(T - 1 - i * stride);  // ascending
  return kept;
}

}  // namespace

Timesteps space_timesteps(std::int64_t T, const std::string& section_counts) {
  DDPM_CHECK(T >= 1, "space_timesteps: the number of timesteps must be at least 1, got " << T);
  if (section_counts.rfind("ddim", 0) == 0) return ddim_spacing(T, section_counts);

  std::vector<std::int64_t> counts;
  std::stringstream ss(section_counts);
  std::string token;
  while (std::getline(ss, token, ',')) counts.push_back(parse_count(token, section_counts));
  DDPM_CHECK(!counts.empty() && section_counts.back() != ',',
             "space_timesteps: '" << section_counts << "' lists no step counts");
  const std::int64_t n_sections = static_cast<std::int64_t>(counts.size());
  DDPM_CHECK(n_sections <= T, "space_timesteps: '" << section_counts << "' has " << n_sections
                                                   << " sections but there are only " << T << " timesteps");

  // Sections of T / n steps; the first T % n sections are one step longer.
  const std::int64_t size_per = T / n_sections, extra = T % n_sections;
  Timesteps kept;
  std::int64_t start = 0;
  for (std::int64_t i = 0; i < n_sections; ++i) {
    const std::int64_t size = size_per + (i < extra ? 1 : 0), count = counts[static_cast<std::size_t>(i)];
    DDPM_CHECK(count <= size, "space_timesteps: section " << i << " of '" << section_counts << "' has " << size
                                                          << " timesteps, fewer than the " << count << " asked for");
    if (count == 1) {
      kept.push_back(start + size - 1);
    } else {
      // A fractional stride so the first and the last step of the section are both kept.
      const double stride = static_cast<double>(size - 1) / static_cast<double>(count - 1);
      for (std::int64_t k = 0; k < count; ++k)
        kept.push_back(start + static_cast<std::int64_t>(std::llround(static_cast<double>(k) * stride)));
    }
    start += size;
  }
  return kept;  // ascending: sections are in order and each stride is >= 1
}

std::vector<double> respaced_betas(const std::vector<double>& base_betas, const Timesteps& use) {
  const std::int64_t T = static_cast<std::int64_t>(base_betas.size());
  DDPM_CHECK(!use.empty(), "respace: no timesteps are kept");
  for (std::size_t i = 0; i < use.size(); ++i) {
    DDPM_CHECK(use[i] >= 0 && use[i] < T, "respace: kept timestep " << use[i] << " is outside [0, " << T << ")");
    DDPM_CHECK(i == 0 || use[i] > use[i - 1], "respace: kept timesteps must be strictly increasing, got "
                                                  << use[i - 1] << " then " << use[i]);
  }
  std::vector<double> betas;
  double abar = 1.0, last_kept_abar = 1.0;
  std::size_t next = 0;
  for (std::int64_t t = 0; t < T && next < use.size(); ++t) {
    abar *= 1.0 - base_betas[static_cast<std::size_t>(t)];
    if (t != use[next]) continue;
    betas.push_back(1.0 - abar / last_kept_abar);  // beta'_i = 1 - abar(t_i) / abar(t_{i-1})
    last_kept_abar = abar;
    ++next;
  }
  return betas;
}

RespacedSchedule respace(const std::vector<double>& base_betas, const Timesteps& use_timesteps) {
  return RespacedSchedule{DiffusionSchedule(respaced_betas(base_betas, use_timesteps)), use_timesteps};
}

RespacedSchedule respace(const std::vector<double>& base_betas, const std::string& section_counts) {
  return respace(base_betas, space_timesteps(static_cast<std::int64_t>(base_betas.size()), section_counts));
}

Timesteps RespacedSchedule::map_timesteps(const Timesteps& t) const {
  Timesteps out(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    DDPM_CHECK(t[i] >= 0 && t[i] < static_cast<std::int64_t>(timestep_map.size()),
               "map_timesteps: respaced timestep " << t[i] << " is outside [0, " << timestep_map.size() << ")");
    out[i] = timestep_map[static_cast<std::size_t>(t[i])];
  }
  return out;
}

}  // namespace ddpm::diffusion
