// engine/error.h: the exception types the library throws, and the check macros.
//
// Conventions: library code never aborts. A failed check throws a typed exception whose
// message is a full sentence naming the op and the values involved, followed by the
// source location. Apps catch ddpm::Error, print what(), and exit non-zero (2 for usage).
// This header is free of engine types, so kernels/ may include it too.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ddpm {

// Base class of everything the library throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// A caller passed something invalid: wrong shape, dtype, device, flag value.
class ValueError : public Error {
 public:
  using Error::Error;
};

// A CUDA runtime, cuBLAS or cuDNN call failed.
class CudaError : public Error {
 public:
  using Error::Error;
};

// A device allocation failed; the message names the bytes requested.
class OutOfMemoryError : public CudaError {
 public:
  using CudaError::CudaError;
};

// A file could not be read or written, or its contents are malformed.
class IoError : public Error {
 public:
  using Error::Error;
};

namespace detail {
inline std::string with_location(const std::string& msg, const char* file, int line) {
  std::ostringstream os;
  os << msg << " [" << file << ":" << line << "]";
  return os.str();
}
}  // namespace detail

// The message without the " [file:line]" locations that DDPM_CHECK/DDPM_THROW append
// (every one of them: a wrapped message carries its inner location too). For text shown
// to users, and for wrapping one error's message in another.
inline std::string strip_source_locations(const std::string& m) {
  std::string out;
  for (std::size_t i = 0; i < m.size();) {
    if (m.compare(i, 2, " [") == 0) {
      // The bracket opened here must be the one closed at `close`: a message's own "[0, 1)"
      // before a location is text, not part of it.
      std::size_t close = m.find(']', i);
      const bool whole = close != std::string::npos && m.find('[', i + 2) > close;
      std::size_t colon = whole ? m.rfind(':', close) : std::string::npos;
      bool digits = colon != std::string::npos && colon > i && colon + 1 < close;
      for (std::size_t k = colon + 1; digits && k < close; ++k) digits = m[k] >= '0' && m[k] <= '9';
      if (digits && m.find('\n', i) > close) {
        i = close + 1;
        continue;
      }
    }
    out += m[i++];
  }
  return out;
}

}  // namespace ddpm

// DDPM_CHECK(cond, ValueError, "op: x has " << n << " dims, expected 4")
#define DDPM_CHECK_AS(cond, ExcType, stream_expr)                                   \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::ostringstream ddpm_check_os_;                                            \
      ddpm_check_os_ << stream_expr;                                                \
      throw ExcType(::ddpm::detail::with_location(ddpm_check_os_.str(), __FILE__, __LINE__)); \
    }                                                                               \
  } while (0)

#define DDPM_CHECK(cond, stream_expr) DDPM_CHECK_AS(cond, ::ddpm::ValueError, stream_expr)

#define DDPM_THROW(ExcType, stream_expr)                                            \
  do {                                                                              \
    std::ostringstream ddpm_throw_os_;                                              \
    ddpm_throw_os_ << stream_expr;                                                  \
    throw ExcType(::ddpm::detail::with_location(ddpm_throw_os_.str(), __FILE__, __LINE__)); \
  } while (0)
