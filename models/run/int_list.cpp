#include "models/run/int_list.h"

#include <cmath>
#include <sstream>

#include "engine/error.h"

namespace ddpm::run {

std::vector<int> parse_int_list(const char* flag, const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    DDPM_CHECK(used > 0 && used == item.size() && v > 0,
               flag << " must be a comma-separated list of positive integers (e.g. 1,2,2,2), got '" << text << "'");
    out.push_back(v);
  }
  DDPM_CHECK(!out.empty(), flag << " must list at least one value, got '" << text << "'");
  return out;
}

std::vector<double> parse_number_list(const char* flag, const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    DDPM_CHECK(used > 0 && used == item.size() && std::isfinite(v),
               flag << " must be a comma-separated list of numbers, got '" << text << "'");
    out.push_back(v);
  }
  DDPM_CHECK(!out.empty() && (text.empty() || text.back() != ','),
             flag << " must be a comma-separated list of numbers, got '" << text << "'");
  return out;
}

}  // namespace ddpm::run
