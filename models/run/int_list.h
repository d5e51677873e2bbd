// models/run/int_list.h: the "1,2,2,2" lists of the model flags (--channel-mult,
// --attention-resolutions), shared by ddpm-train and ddpm-profile.
#pragma once

#include <string>
#include <vector>

namespace ddpm::run {

// Parses comma-separated positive integers; a ValueError names `flag` and the text when an
// item is not a positive integer or the list is empty.
std::vector<int> parse_int_list(const char* flag, const std::string& text);

}  // namespace ddpm::run
