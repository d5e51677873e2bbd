// tests/support/value_error.h: asserting on the engine's one-message ValueErrors (and
// IoErrors).
#pragma once

#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "engine/error.h"

namespace ddpm::testing {

// The message of the ValueError that f() throws, or "no error" when it throws none.
template <class F>
std::string value_error_message(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const ValueError& e) {
    return e.what();
  }
  return "no error";
}

// Expects f() to throw a ValueError whose message contains `fragment`.
template <class F>
void expect_value_error(F&& f, const std::string& fragment) {
  const std::string message = value_error_message(std::forward<F>(f));
  EXPECT_NE(message.find(fragment), std::string::npos) << "expected a ValueError containing '" << fragment
                                                        << "', got: " << message;
}

// The message of the IoError that f() throws, or "no error" when it throws none.
template <class F>
std::string io_error_message(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const IoError& e) {
    return e.what();
  }
  return "no error";
}

// Expects `message` to contain `fragment`.
inline void expect_has(const std::string& message, const std::string& fragment) {
  EXPECT_NE(message.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << message;
}

}  // namespace ddpm::testing
