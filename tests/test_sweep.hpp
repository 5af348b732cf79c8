#pragma once
/// How much of an exhaustive or random sweep a test runs. The Release pass of CI runs every case; the sanitizer pass
/// (ASan + UBSan at -O0, PARATWIN_SANITIZED) runs every kSweepStride-th, which still drives every code path of the sweep
/// through the sanitizers but saves the minutes the full sweeps cost there.

namespace paratwin::test {

#ifdef PARATWIN_SANITIZED
inline constexpr int kSweepStride = 4;
#else
inline constexpr int kSweepStride = 1;
#endif

}  // namespace paratwin::test
