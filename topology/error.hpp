#pragma once
/// Errors shared by every paratwin library.
///
/// User and configuration errors (bad flags, files, sizes) throw `paratwin::Error` with one message that names
/// what is wrong and the rule it breaks; the CLI prints it and exits with a non-zero code. Broken internal
/// invariants use `PARATWIN_ASSERT`, which throws `paratwin::InternalError`: reaching one is a paratwin bug.

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace paratwin {

/// A user-facing error: bad input, an impossible configuration, a file that cannot be read.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A broken internal invariant (a paratwin bug, never the user's fault).
class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// Throws `paratwin::Error` with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace paratwin

/// Always-on invariant check (like SimGrid's xbt_assert), throwing paratwin::InternalError.
#define PARATWIN_ASSERT(cond, ...)                                                                                   \
  do {                                                                                                               \
    if (!(cond)) {                                                                                                   \
      throw ::paratwin::InternalError(                                                                               \
          ::fmt::format("{}:{}: assertion '{}' failed: {}", __FILE__, __LINE__, #cond, ::fmt::format(__VA_ARGS__))); \
    }                                                                                                                \
  } while (false)
