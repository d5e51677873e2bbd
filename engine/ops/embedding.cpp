// engine/ops/embedding.cpp: timestep embedding (forward only) and the class-embedding
// lookup with its scatter-add backward. Conventions in engine/ops/embedding.h.
#include "engine/ops/embedding.h"

#include <cmath>

#include "engine/ops/common.h"
#include "engine/profiler.h"
#include "kernels/cpu/embedding.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/embedding.h"
#endif

namespace ddpm {

TimestepEmbeddingStyle parse_timestep_embedding_style(const std::string& name) {
  if (name == "ddpm") return TimestepEmbeddingStyle::ddpm;
  if (name == "improved") return TimestepEmbeddingStyle::improved;
  DDPM_THROW(ValueError, "timestep embedding style '"
                             << name
                             << "' is unknown; expected 'ddpm' (frequencies over half-1, [sin, cos]) or "
                                "'improved' (frequencies over half, [cos, sin])");
}

const char* timestep_embedding_style_name(TimestepEmbeddingStyle style) {
  return style == TimestepEmbeddingStyle::ddpm ? "ddpm" : "improved";
}

Tensor timestep_embedding(const Tensor& t, int dim, TimestepEmbeddingStyle style, double max_period) {
  const char* op = "timestep_embedding";
  ops::check_float(op, t, "t");
  DDPM_CHECK(t.ndim() == 1, op << ": 't' must be a vector of N timesteps, got shape " << shape_str(t.shape()));
  bool ddpm_style = style == TimestepEmbeddingStyle::ddpm;
  int min_dim = ddpm_style ? 4 : 2;
  DDPM_CHECK(dim >= min_dim, op << ": dim " << dim << " is too small for the '" << timestep_embedding_style_name(style)
                                << "' style, which needs dim >= " << min_dim);
  DDPM_CHECK(std::isfinite(max_period) && max_period > 0,
             op << ": max_period must be a positive finite number, got " << max_period);
  std::int64_t N = t.dim(0), half = dim / 2;
  std::int64_t denominator = ddpm_style ? half - 1 : half;  // D in freq_i = exp(-ln(max_period) i / D)
  double log_max_period = std::log(max_period);
  Tensor out = Tensor::empty({N, dim}, t.dtype(), t.device());  // [N, dim]
  OpScope scope(op, 4.0 * static_cast<double>(out.numel()), cost::bytes(N + out.numel(), t.dtype()), t.device());
  if (t.device().is_cuda()) {
    DDPM_ON_CUDA(op, cuda::timestep_embedding(t.data<float>(), out.data<float>(), N, dim, log_max_period, denominator,
                                              ddpm_style, cuda::stream()));
  } else {
    ops::cpu_dispatch(op, t.dtype(), [&](auto tag) {
      using T = decltype(tag);
      cpu::timestep_embedding(t.data<T>(), out.data<T>(), N, dim, log_max_period, denominator, ddpm_style);
    });
  }
  return out;  // t is data: no tape node
}

namespace {

// dL/dtable from g [n, dim]: zeros, then g's rows added at their ids.
Tensor embedding_backward(const Tensor& g, const std::vector<std::int64_t>& ids, const Shape& table_shape) {
  Tensor gt = Tensor::empty(table_shape, g.dtype(), g.device());
  std::int64_t n = static_cast<std::int64_t>(ids.size()), classes = table_shape[0], dim = table_shape[1];
  if (g.device().is_cuda()) {
    DDPM_ON_CUDA("embedding backward", cuda::embedding_backward(g.data<float>(), ids.data(), gt.data<float>(), n,
                                                                classes, dim, cuda::stream()));
  } else {
    ops::cpu_dispatch("embedding backward", g.dtype(), [&](auto tag) {
      using T = decltype(tag);
      cpu::embedding_backward(g.data<T>(), ids.data(), gt.data<T>(), n, classes, dim);
    });
  }
  return gt;
}

}  // namespace

Tensor embedding(const Tensor& table, const std::vector<std::int64_t>& ids) {
  const char* op = "embedding";
  ops::check_float(op, table, "table");
  DDPM_CHECK(table.ndim() == 2,
             op << ": 'table' must be [num_classes, dim], got shape " << shape_str(table.shape()));
  std::int64_t classes = table.dim(0), dim = table.dim(1);
  for (std::size_t i = 0; i < ids.size(); ++i)
    DDPM_CHECK(ids[i] >= 0 && ids[i] < classes, op << ": id " << ids[i] << " (at position " << i
                                                   << ") is out of range for a table of " << classes
                                                   << " classes (shape " << shape_str(table.shape())
                                                   << "); ids must be in [0, " << classes << ")");
  std::int64_t n = static_cast<std::int64_t>(ids.size());
  Tensor out = Tensor::empty({n, dim}, table.dtype(), table.device());  // [n, dim]
  OpScope scope(op, 0.0, cost::bytes(2 * out.numel(), table.dtype()), table.device());
  if (table.device().is_cuda()) {
    DDPM_ON_CUDA(op, cuda::embedding_forward(table.data<float>(), ids.data(), out.data<float>(), n, dim,
                                             cuda::stream()));
  } else {
    ops::cpu_dispatch(op, table.dtype(), [&](auto tag) {
      using T = decltype(tag);
      cpu::embedding_forward(table.data<T>(), ids.data(), out.data<T>(), n, dim);
    });
  }
  Shape table_shape = table.shape();
  record(out, op, {table}, [ids, table_shape](const Tensor& g, const std::vector<bool>&) {
    OpScope scope("embedding.backward", static_cast<double>(g.numel()),
                  cost::bytes(g.numel() + shape_numel(table_shape), g.dtype()), g.device());
    return std::vector<Tensor>{embedding_backward(g, ids, table_shape)};
  });
  return out;
}

}  // namespace ddpm
