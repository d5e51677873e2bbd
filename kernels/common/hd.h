// kernels/common/hd.h: DDPM_HD marks functions compiled for both host and device, so the
// CPU reference and the CUDA kernel share one definition of the math.
#pragma once
#if defined(__CUDACC__)
#define DDPM_HD __host__ __device__ __forceinline__
#else
#define DDPM_HD inline
#endif
