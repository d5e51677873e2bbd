// kernels/common/elementwise_ops.h: the math of every elementwise op, written once and
// used by both the CPU reference loops and the CUDA kernels.
//
// Unary ops: y = f(x, alpha); backward gx = g * df(x, y, alpha) with df = dy/dx.
// Binary ops: out = f(a, b). Their backward is composed from ops in engine/ops.
#pragma once

#include <cmath>

#include "kernels/common/hd.h"

namespace ddpm::ew {

struct Add { template <class T> static DDPM_HD T f(T a, T b) { return a + b; } };
struct Sub { template <class T> static DDPM_HD T f(T a, T b) { return a - b; } };
struct Mul { template <class T> static DDPM_HD T f(T a, T b) { return a * b; } };
struct Div { template <class T> static DDPM_HD T f(T a, T b) { return a / b; } };

// SiLU (swish): y = x * sigmoid(x);  dy/dx = s (1 + x (1 - s)), s = sigmoid(x).
struct Silu {
  static constexpr const char* name = "silu";
  template <class T> static DDPM_HD T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }
  template <class T> static DDPM_HD T f(T x, T) { return x * sigmoid(x); }
  template <class T> static DDPM_HD T df(T x, T, T) {
    T s = sigmoid(x);
    return s * (T(1) + x * (T(1) - s));
  }
};
// y = e^x; dy/dx = y.
struct Exp {
  static constexpr const char* name = "exp";
  template <class T> static DDPM_HD T f(T x, T) { return std::exp(x); }
  template <class T> static DDPM_HD T df(T, T y, T) { return y; }
};
// y = ln x; dy/dx = 1/x.
struct Log {
  static constexpr const char* name = "log";
  template <class T> static DDPM_HD T f(T x, T) { return std::log(x); }
  template <class T> static DDPM_HD T df(T x, T, T) { return T(1) / x; }
};
// y = sqrt x; dy/dx = 1 / (2 y).
struct Sqrt {
  static constexpr const char* name = "sqrt";
  template <class T> static DDPM_HD T f(T x, T) { return std::sqrt(x); }
  template <class T> static DDPM_HD T df(T, T y, T) { return T(0.5) / y; }
};
// y = x^2; dy/dx = 2x.
struct Square {
  static constexpr const char* name = "square";
  template <class T> static DDPM_HD T f(T x, T) { return x * x; }
  template <class T> static DDPM_HD T df(T x, T, T) { return T(2) * x; }
};
// y = alpha x; dy/dx = alpha.
struct Scale {
  static constexpr const char* name = "scale";
  template <class T> static DDPM_HD T f(T x, T alpha) { return alpha * x; }
  template <class T> static DDPM_HD T df(T, T, T alpha) { return alpha; }
};
// y = x + alpha; dy/dx = 1.
struct AddScalar {
  static constexpr const char* name = "add_scalar";
  template <class T> static DDPM_HD T f(T x, T alpha) { return x + alpha; }
  template <class T> static DDPM_HD T df(T, T, T) { return T(1); }
};

}  // namespace ddpm::ew
