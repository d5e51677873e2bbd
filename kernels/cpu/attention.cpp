// kernels/cpu/attention.cpp: reference loops for the attention core (see attention.h for
// the layout and the equations). One (batch, head) pair at a time, one query row at a time;
// a query row of head h meets the Sk key rows of the same batch element and head.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ddpm::cpu {

namespace {

// The [S, d] matrix of head h in batch b of a [B, S, C] tensor, rows C apart.
template <typename T>
const T* head_ptr(const T* x, std::int64_t b, std::int64_t h, std::int64_t S, std::int64_t C, std::int64_t d) {
  return x + b * S * C + h * d;
}

// scores[j] = (a q_i) . (a k_j) = (q_i . k_j) / sqrt(d) for every key j < Sk of one head.
template <typename T>
void score_row(const T* qh, const T* kh, std::int64_t i, std::int64_t Sk, std::int64_t C, std::int64_t d,
               double scale2, double* scores) {
  const T* qi = qh + i * C;
  for (std::int64_t j = 0; j < Sk; ++j) {
    const T* kj = kh + j * C;
    double dot = 0;
    for (std::int64_t c = 0; c < d; ++c) dot += double(qi[c]) * double(kj[c]);
    scores[j] = dot * scale2;
  }
}

// scores[j] += bias[h, i, j]: row i of head h of the [heads, Sq, Sk] logit bias.
template <typename T>
void add_bias_row(const T* bias, std::int64_t h, std::int64_t i, std::int64_t Sq, std::int64_t Sk, double* scores) {
  const T* row = bias + (h * Sq + i) * Sk;
  for (std::int64_t j = 0; j < Sk; ++j) scores[j] += double(row[j]);
}

}  // namespace

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse, std::int64_t B, std::int64_t Sq,
                       std::int64_t Sk, std::int64_t C, std::int64_t heads, const T* bias) {
  const std::int64_t d = C / heads;
  const double scale2 = 1.0 / std::sqrt(double(d));  // (d^(-1/4))^2
  std::vector<double> p(static_cast<std::size_t>(Sk));  // one row of scores, then of P
  std::vector<double> acc(static_cast<std::size_t>(d));
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t h = 0; h < heads; ++h) {
      const T* qh = head_ptr(q, b, h, Sq, C, d);
      const T* kh = head_ptr(k, b, h, Sk, C, d);
      const T* vh = head_ptr(v, b, h, Sk, C, d);
      for (std::int64_t i = 0; i < Sq; ++i) {
        score_row(qh, kh, i, Sk, C, d, scale2, p.data());
        if (bias != nullptr) add_bias_row(bias, h, i, Sq, Sk, p.data());
        // Softmax with the row maximum subtracted: exp never overflows.
        double m = *std::max_element(p.begin(), p.end());
        double sum = 0;
        for (double& x : p) sum += (x = std::exp(x - m));
        for (double& x : p) x /= sum;
        lse[(b * heads + h) * Sq + i] = static_cast<T>(m + std::log(sum));
        // out_i = sum_j P_ij v_j
        std::fill(acc.begin(), acc.end(), 0.0);
        for (std::int64_t j = 0; j < Sk; ++j) {
          const T* vj = vh + j * C;
          for (std::int64_t c = 0; c < d; ++c) acc[c] += p[j] * double(vj[c]);
        }
        T* oi = out + b * Sq * C + i * C + h * d;
        for (std::int64_t c = 0; c < d; ++c) oi[c] = static_cast<T>(acc[c]);
      }
    }
  }
}

template <typename T>
void attention_backward(const T* q, const T* k, const T* v, const T* lse, const T* grad_out, T* dq, T* dk, T* dv,
                        std::int64_t B, std::int64_t Sq, std::int64_t Sk, std::int64_t C, std::int64_t heads,
                        const T* bias, T* dbias) {
  const std::int64_t d = C / heads;
  const double scale2 = 1.0 / std::sqrt(double(d));
  // dBias [heads, Sq, Sk] sums dS over the batch: accumulated in double, written at the end.
  std::vector<double> dbias_acc(dbias != nullptr ? static_cast<std::size_t>(heads * Sq * Sk) : 0);
  std::vector<double> p(static_cast<std::size_t>(Sk)), ds(static_cast<std::size_t>(Sk));
  std::vector<double> dq_row(static_cast<std::size_t>(d));
  // dK and dV [Sk, d] of one head sum over every query row: accumulated here, written at the end.
  std::vector<double> dk_acc(static_cast<std::size_t>(Sk * d)), dv_acc(static_cast<std::size_t>(Sk * d));
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t h = 0; h < heads; ++h) {
      const T* qh = head_ptr(q, b, h, Sq, C, d);
      const T* kh = head_ptr(k, b, h, Sk, C, d);
      const T* vh = head_ptr(v, b, h, Sk, C, d);
      const T* gh = head_ptr(grad_out, b, h, Sq, C, d);
      std::fill(dk_acc.begin(), dk_acc.end(), 0.0);
      std::fill(dv_acc.begin(), dv_acc.end(), 0.0);
      for (std::int64_t i = 0; i < Sq; ++i) {
        const T* gi = gh + i * C;
        // P_ij = exp(scores_ij - lse_i), recomputed from the saved log-sum-exp.
        score_row(qh, kh, i, Sk, C, d, scale2, p.data());
        if (bias != nullptr) add_bias_row(bias, h, i, Sq, Sk, p.data());
        const double lse_i = double(lse[(b * heads + h) * Sq + i]);
        for (double& x : p) x = std::exp(x - lse_i);
        // dP_ij = g_i . v_j, then dS_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij').
        double row_dot = 0;
        for (std::int64_t j = 0; j < Sk; ++j) {
          const T* vj = vh + j * C;
          double dp = 0;
          for (std::int64_t c = 0; c < d; ++c) dp += double(gi[c]) * double(vj[c]);
          ds[j] = dp;
          row_dot += dp * p[j];
        }
        for (std::int64_t j = 0; j < Sk; ++j) ds[j] = p[j] * (ds[j] - row_dot);
        if (dbias != nullptr) {
          double* db = dbias_acc.data() + (h * Sq + i) * Sk;  // dBias[h, i, :] += dS_bh[i, :]
          for (std::int64_t j = 0; j < Sk; ++j) db[j] += ds[j];
        }
        // dV_j += P_ij g_i;  dQ_i = sum_j dS_ij k_j / sqrt(d);  dK_j += dS_ij q_i / sqrt(d).
        const T* qi = qh + i * C;
        std::fill(dq_row.begin(), dq_row.end(), 0.0);
        for (std::int64_t j = 0; j < Sk; ++j) {
          const T* kj = kh + j * C;
          double* dvj = dv_acc.data() + j * d;
          double* dkj = dk_acc.data() + j * d;
          for (std::int64_t c = 0; c < d; ++c) {
            dvj[c] += p[j] * double(gi[c]);
            dq_row[c] += ds[j] * double(kj[c]);
            dkj[c] += ds[j] * double(qi[c]);
          }
        }
        T* dqi = dq + b * Sq * C + i * C + h * d;
        for (std::int64_t c = 0; c < d; ++c) dqi[c] = static_cast<T>(dq_row[c] * scale2);
      }
      for (std::int64_t j = 0; j < Sk; ++j) {
        T* dkj = dk + b * Sk * C + j * C + h * d;
        T* dvj = dv + b * Sk * C + j * C + h * d;
        for (std::int64_t c = 0; c < d; ++c) {
          dkj[c] = static_cast<T>(dk_acc[j * d + c] * scale2);
          dvj[c] = static_cast<T>(dv_acc[j * d + c]);
        }
      }
    }
  }
  for (std::size_t e = 0; e < dbias_acc.size(); ++e) dbias[e] = static_cast<T>(dbias_acc[e]);
}

#define DDPM_INSTANTIATE_ATTENTION(T)                                                                           \
  template void attention_forward<T>(const T*, const T*, const T*, T*, T*, std::int64_t, std::int64_t,           \
                                     std::int64_t, std::int64_t, std::int64_t, const T*);                        \
  template void attention_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, std::int64_t, \
                                      std::int64_t, std::int64_t, std::int64_t, std::int64_t, const T*, T*);
DDPM_INSTANTIATE_ATTENTION(float)
DDPM_INSTANTIATE_ATTENTION(double)
#undef DDPM_INSTANTIATE_ATTENTION

}  // namespace ddpm::cpu
