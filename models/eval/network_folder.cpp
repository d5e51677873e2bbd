// models/eval/network_folder.cpp: an evaluation network's weights on disk (see
// network_folder.h).
#include "models/eval/network_folder.h"

#include <utility>

#include "engine/io/safetensors.h"

namespace ddpm::eval {

void save_network_weights(const nn::Module& net, const std::string& path, const std::string& architecture) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, t] : net.named_parameters()) tensors.emplace_back(name, t.cpu());
  save_safetensors(path, tensors, {{"architecture", architecture}});
}

void load_network_weights(const nn::Module& net, const std::string& path, const std::string& what) {
  const SafetensorsFile f = load_safetensors(path);
  const auto params = net.named_parameters();
  DDPM_CHECK_AS(f.tensors.size() == params.size(), IoError,
                f.path << " holds " << f.tensors.size() << " tensors, " << what << " has " << params.size());
  for (const auto& [name, p] : params) {
    const Tensor& t = f.get(name);
    DDPM_CHECK_AS(t.shape() == p.shape() && t.dtype() == p.dtype(), IoError,
                  f.path << ": " << name << " is " << t.describe() << ", expected " << p.describe());
    Tensor dst = p;
    dst.copy_from(t);
  }
}

}  // namespace ddpm::eval
