#include "train/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace mtrank::train {

namespace {

std::atomic<int> g_stop_signal{0};
void remember_signal(int sig) { g_stop_signal = sig; }

// The variables this launcher sets: inherited values would contradict them.
bool is_run_variable(const std::string& entry) {
  static const char* names[] = {"RANK=", "LOCAL_RANK=", "WORLD_SIZE=", "LOCAL_WORLD_SIZE=", "GROUP_RANK=",
                                "GROUP_WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT=", "TORCHELASTIC_USE_AGENT_STORE="};
  for (const char* n : names)
    if (entry.rfind(n, 0) == 0) return true;
  return false;
}

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return std::string("was killed by signal ") + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

int exit_code_of(int status) { return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status); }

}  // namespace

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string err = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("could not find a free local port: " + err);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

int launch_local_workers(const LaunchOptions& o) {
  const int port = free_local_port();
  std::vector<std::string> inherited;
  for (char** e = environ; *e; ++e)
    if (!is_run_variable(*e)) inherited.emplace_back(*e);

  // SIGINT and SIGTERM reach the launcher: it stops the workers, then exits.
  struct sigaction sa {};
  sa.sa_handler = remember_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  std::map<pid_t, int> rank_of;  // running workers
  auto stop_all = [&](int sig) {
    for (const auto& [pid, rank] : rank_of) {
      ::kill(pid, sig);
      ::kill(pid, SIGCONT);  // a stopped worker (one that hangs) acts on SIGTERM only once it runs
    }
  };
  for (int rank = 0; rank < o.workers; ++rank) {
    std::vector<std::string> env = inherited;
    const std::string n = std::to_string(o.workers), r = std::to_string(rank);
    for (const std::string& kv : std::vector<std::string>{"RANK=" + r, "LOCAL_RANK=" + r, "GROUP_RANK=0", "WORLD_SIZE=" + n,
                                  "LOCAL_WORLD_SIZE=" + n, "GROUP_WORLD_SIZE=1", std::string("MASTER_ADDR=127.0.0.1"),
                                  "MASTER_PORT=" + std::to_string(port)})
      env.push_back(kv);
    std::vector<char*> envp, argv;
    for (auto& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string program = "/proc/self/exe";
    argv.push_back(program.data());
    std::vector<std::string> args = o.arguments;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data());
    if (rc != 0) {
      stop_all(SIGKILL);
      for (const auto& [p, rk] : rank_of) ::waitpid(p, nullptr, 0);
      throw std::runtime_error("could not start worker rank " + r + ": " + std::strerror(rc));
    }
    rank_of[pid] = rank;
  }

  int result = 0;
  bool failed = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (!rank_of.empty()) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, failed || g_stop_signal ? WNOHANG : 0);
    if (pid > 0) {
      const auto it = rank_of.find(pid);
      if (it == rank_of.end()) continue;
      const int rank = it->second;
      rank_of.erase(it);
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && !failed) {
        failed = true;
        result = exit_code_of(status);
        std::fprintf(stderr, "mtrank train: worker rank %d (pid %d) %s; stopping the other %zu worker(s)\n", rank,
                     static_cast<int>(pid), describe(status).c_str(), rank_of.size());
        stop_all(SIGTERM);
        deadline = std::chrono::steady_clock::now() + o.grace;
      }
      continue;
    }
    if (pid < 0 && errno != EINTR && errno != ECHILD) break;
    if (g_stop_signal && !failed) {
      failed = true;
      result = 128 + g_stop_signal;
      stop_all(SIGTERM);
      deadline = std::chrono::steady_clock::now() + o.grace;
    }
    if (failed) {
      if (std::chrono::steady_clock::now() > deadline) {
        stop_all(SIGKILL);
        deadline = std::chrono::steady_clock::time_point::max();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace mtrank::train
