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
// GELU, the exact (erf) form (Hendrycks & Gimpel 2016; PyTorch's default, approximate='none'):
//   y = x Phi(x) = 0.5 x (1 + erf(x / sqrt(2))),   Phi = the standard normal CDF;
//   dy/dx = Phi(x) + x phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi) the normal density.
struct Gelu {
  static constexpr const char* name = "gelu";
  template <class T> static DDPM_HD T cdf(T x) { return T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440))); }
  template <class T> static DDPM_HD T f(T x, T) { return x * cdf(x); }
  template <class T> static DDPM_HD T df(T x, T, T) {
    return cdf(x) + x * T(0.39894228040143267794) * std::exp(T(-0.5) * x * x);  // 1/sqrt(2 pi)
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

// y = tanh x; dy/dx = 1 - y^2.
struct Tanh {
  static constexpr const char* name = "tanh";
  template <class T> static DDPM_HD T f(T x, T) { return std::tanh(x); }
  template <class T> static DDPM_HD T df(T, T y, T) { return T(1) - y * y; }
};
// y = sigmoid x = 1 / (1 + e^-x); dy/dx = y (1 - y).
struct Sigmoid {
  static constexpr const char* name = "sigmoid";
  template <class T> static DDPM_HD T f(T x, T) { return T(1) / (T(1) + std::exp(-x)); }
  template <class T> static DDPM_HD T df(T, T y, T) { return y * (T(1) - y); }
};
// y = max(x, alpha); dy/dx = 1 where x >= alpha, else 0 (the bound itself passes the
// gradient, as torch.clamp does). NaN stays NaN.
struct ClampMin {
  static constexpr const char* name = "clamp_min";
  template <class T> static DDPM_HD T f(T x, T alpha) { return x < alpha ? alpha : x; }
  template <class T> static DDPM_HD T df(T x, T, T alpha) { return x >= alpha ? T(1) : T(0); }
};
// y = min(x, alpha); dy/dx = 1 where x <= alpha, else 0.
struct ClampMax {
  static constexpr const char* name = "clamp_max";
  template <class T> static DDPM_HD T f(T x, T alpha) { return x > alpha ? alpha : x; }
  template <class T> static DDPM_HD T df(T x, T, T alpha) { return x <= alpha ? T(1) : T(0); }
};
// Masks: y = 1 where x > alpha (resp. x < alpha), else 0. Piecewise constant: dy/dx = 0.
struct GreaterThan {
  static constexpr const char* name = "greater_than";
  template <class T> static DDPM_HD T f(T x, T alpha) { return x > alpha ? T(1) : T(0); }
  template <class T> static DDPM_HD T df(T, T, T) { return T(0); }
};
struct LessThan {
  static constexpr const char* name = "less_than";
  template <class T> static DDPM_HD T f(T x, T alpha) { return x < alpha ? T(1) : T(0); }
  template <class T> static DDPM_HD T df(T, T, T) { return T(0); }
};

}  // namespace ddpm::ew
