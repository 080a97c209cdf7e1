#include "train/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
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
  // GLOO_SOCKET_IFNAME too: the workers meet on loopback, whatever interface it names.
  static const char* names[] = {"RANK=", "LOCAL_RANK=", "WORLD_SIZE=", "LOCAL_WORLD_SIZE=", "GROUP_RANK=",
                                "GROUP_WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT=", "TORCHELASTIC_USE_AGENT_STORE=",
                                "GLOO_SOCKET_IFNAME="};
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

  // SIGINT, SIGTERM and SIGHUP reach the launcher: it stops the workers, then
  // exits. SIGCHLD must not be ignored, or the workers' exit codes are lost.
  struct sigaction sa {};
  sa.sa_handler = remember_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  struct sigaction old_int {}, old_term {}, old_hup {}, old_chld {};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGHUP, &sa, &old_hup);
  sigaction(SIGCHLD, &dfl, &old_chld);
  const auto restore_signals = [&] {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    sigaction(SIGHUP, &old_hup, nullptr);
    sigaction(SIGCHLD, &old_chld, nullptr);
  };

  std::map<pid_t, int> rank_of;  // running workers
  auto stop_all = [&](int sig) {
    for (const auto& [pid, rank] : rank_of) {
      ::kill(pid, sig);
      ::kill(pid, SIGCONT);  // a stopped worker (one that hangs) acts on SIGTERM only once it runs
    }
  };
  const pid_t launcher = ::getpid();
  for (int rank = 0; rank < o.workers; ++rank) {
    std::vector<std::string> env = inherited;
    const std::string n = std::to_string(o.workers), r = std::to_string(rank);
    for (const std::string& kv : std::vector<std::string>{"RANK=" + r, "LOCAL_RANK=" + r, "GROUP_RANK=0", "WORLD_SIZE=" + n,
                                                          "LOCAL_WORLD_SIZE=" + n, "GROUP_WORLD_SIZE=1",
                                                          std::string("MASTER_ADDR=127.0.0.1"),
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
    // fork + exec rather than posix_spawn: the child asks to be sent SIGTERM
    // when the launcher dies (killed, OOM), so no worker outlives it. Only
    // async-signal-safe calls between fork and exec.
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher) ::_exit(127);  // the launcher died before prctl
      ::execve("/proc/self/exe", argv.data(), envp.data());
      ::_exit(127);
    }
    if (pid < 0) {
      const std::string err = std::strerror(errno);
      stop_all(SIGKILL);
      for (const auto& [p, rk] : rank_of) ::waitpid(p, nullptr, 0);
      restore_signals();
      throw std::runtime_error("could not start worker rank " + r + ": " + err);
    }
    rank_of[pid] = rank;
  }

  // Polls (no blocking wait), so a signal is never missed between a check and a wait.
  int result = 0;
  bool failed = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (!rank_of.empty()) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      const auto it = rank_of.find(pid);
      if (it == rank_of.end()) continue;
      const int rank = it->second;
      rank_of.erase(it);
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && !failed) {
        failed = true;
        result = exit_code_of(status);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
          std::fprintf(stderr, "mtrank train: worker rank %d could not start (exec failed)\n", rank);
        std::fprintf(stderr, "mtrank train: worker rank %d (pid %d) %s; stopping the other %zu worker(s)\n", rank,
                     static_cast<int>(pid), describe(status).c_str(), rank_of.size());
        stop_all(SIGTERM);
        deadline = std::chrono::steady_clock::now() + o.grace;
      }
      continue;
    }
    if (pid < 0 && errno == ECHILD) {  // the workers are gone without a status: not a success
      if (!failed) {
        std::fprintf(stderr, "mtrank train: lost track of %zu worker(s) (their exit status is gone)\n", rank_of.size());
        result = 1;
      }
      break;
    }
    if (g_stop_signal && !failed) {
      failed = true;
      result = 128 + g_stop_signal;
      std::fprintf(stderr, "mtrank train: stopping the workers (%s)\n", strsignal(g_stop_signal));
      stop_all(SIGTERM);
      deadline = std::chrono::steady_clock::now() + o.grace;
    }
    if (failed && std::chrono::steady_clock::now() > deadline) {
      stop_all(SIGKILL);
      deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  restore_signals();
  return result;
}

}  // namespace mtrank::train
