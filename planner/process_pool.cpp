#include "planner/process_pool.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <vector>

#include "topology/error.hpp"

namespace paratwin::plan {
namespace {

constexpr int kPollInterval_ms = 100;
constexpr char kTagOk = 'O';
constexpr char kTagError = 'E';

struct Child {
  pid_t pid = -1;
  int fd = -1;
  std::size_t task = 0;
  std::string data;
};

void write_all(int fd, const std::string& text) {
  const char* data = text.data();
  std::size_t size = text.size();
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ::_exit(3);
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

[[noreturn]] void run_child(int fd, std::size_t index, const std::function<std::string(std::size_t)>& task) {
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  std::string answer;
  try {
    answer = kTagOk + task(index);
  } catch (const std::exception& e) {
    answer = std::string(1, kTagError) + e.what();
  } catch (...) {
    answer = std::string(1, kTagError) + "unknown exception";
  }
  write_all(fd, answer);
  ::close(fd);
  ::_exit(0);  // skip the parent's atexit handlers, static destructors and stdio buffers
}

// Waits for the child and turns what it sent into an answer.
TaskAnswer reap(Child& child) {
  int status = 0;
  while (::waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
  }
  TaskAnswer answer;
  if (WIFSIGNALED(status)) {
    answer.text =
        fmt::format("the worker process died with signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  } else if (child.data.empty() || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    answer.text =
        fmt::format("the worker process failed (exit status {})", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  } else {
    answer.ok = child.data[0] == kTagOk;
    answer.text = child.data.substr(1);
  }
  return answer;
}

void kill_all(std::vector<Child>& children) {
  for (auto& child : children) {
    ::kill(child.pid, SIGKILL);
    ::close(child.fd);
    while (::waitpid(child.pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  children.clear();
}

}  // namespace

int online_cores() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : static_cast<int>(n);
}

ProcessPool::ProcessPool(int jobs) : jobs_(jobs) {
  if (jobs < 1) fail("--jobs {} is invalid: at least one worker process", jobs);
}

bool ProcessPool::run(std::size_t count, const std::function<std::string(std::size_t)>& task,
                      const std::function<void(std::size_t, TaskAnswer)>& on_done,
                      const std::function<bool()>& should_stop) {
  std::vector<Child> children;
  std::size_t next = 0;
  std::array<char, 1 << 16> buffer{};
  while (next < count || !children.empty()) {
    if (should_stop()) {
      kill_all(children);
      return false;
    }
    while (next < count && children.size() < static_cast<std::size_t>(jobs_)) {
      std::array<int, 2> fds{};
      if (::pipe(fds.data()) != 0) {
        kill_all(children);
        fail("plan: cannot create a pipe for a worker process ({})", std::strerror(errno));
      }
      std::fflush(nullptr);  // the child must not inherit unwritten stdio buffers
      const pid_t pid = ::fork();
      if (pid < 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        kill_all(children);
        fail("plan: cannot fork a worker process ({})", std::strerror(errno));
      }
      if (pid == 0) {
        ::close(fds[0]);
        for (const auto& other : children) ::close(other.fd);
        run_child(fds[1], next, task);
      }
      ::close(fds[1]);
      children.push_back(Child{pid, fds[0], next, {}});
      ++next;
    }
    std::vector<pollfd> polled;
    polled.reserve(children.size());
    for (const auto& child : children) polled.push_back(pollfd{child.fd, POLLIN, 0});
    const int ready = ::poll(polled.data(), polled.size(), kPollInterval_ms);
    if (ready < 0 && errno != EINTR) {
      kill_all(children);
      fail("plan: waiting for worker processes failed ({})", std::strerror(errno));
    }
    if (ready <= 0) continue;
    for (std::size_t i = children.size(); i-- > 0;) {
      if ((polled[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      Child& child = children[i];
      const ssize_t n = ::read(child.fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) {
        child.data.append(buffer.data(), static_cast<std::size_t>(n));
        continue;
      }
      ::close(child.fd);
      TaskAnswer answer = reap(child);
      const std::size_t index = child.task;
      children.erase(children.begin() + static_cast<std::ptrdiff_t>(i));
      try {
        on_done(index, std::move(answer));
      } catch (...) {
        kill_all(children);
        throw;
      }
    }
  }
  return true;
}

}  // namespace paratwin::plan
