#pragma once
/// `paratwin compare --plots DIR`: pictures drawn by matplotlib (cli/compare_plots.py, embedded in the binary).

#include <string>

#include "traces/compare.hpp"
#include "traces/trace.hpp"

namespace paratwin::cli {

/// A Python interpreter that can import matplotlib: $PARATWIN_PYTHON if set, else the first of `python3` on PATH and
/// /usr/bin/python3 that can (a pyenv or venv python3 often lacks Debian's python3-matplotlib). Throws
/// paratwin::Error naming what was tried when none can.
[[nodiscard]] std::string find_matplotlib_python();

/// Creates `dir` if needed and checks that files can be created in it; throws paratwin::Error naming it otherwise.
void prepare_plot_dir(const std::string& dir);

/// Draws timeline_rank<rank>.png, scatter_by_kind.png and error_by_size.png into `dir`. The pictures are drawn in a
/// temporary folder inside `dir` and moved in only when all three exist, so a failure leaves nothing behind.
void write_comparison_plots(const std::string& python, const Trace& predicted, const Trace& measured,
                            const Comparison& comparison, int rank, const std::string& dir);

}  // namespace paratwin::cli
