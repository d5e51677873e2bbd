// models/run/int_list.h: the comma-separated lists of the flags: "1,2,2,2" of the model flags
// (--channel-mult, --attention-resolutions; ddpm-train and ddpm-profile) and lists of real
// numbers ("80,0.821" of --consistency-sigmas, "0,1,2,4" of ddpm-toy's --scales).
#pragma once

#include <string>
#include <vector>

namespace ddpm::run {

// Parses comma-separated positive integers; a ValueError names `flag` and the text when an
// item is not a positive integer or the list is empty.
std::vector<int> parse_int_list(const char* flag, const std::string& text);

// Parses comma-separated finite real numbers (each item whole: "0.4x" is refused); a
// ValueError names `flag` and the text when an item is not one or the list is empty. Ranges
// are the caller's to check.
std::vector<double> parse_number_list(const char* flag, const std::string& text);

}  // namespace ddpm::run
