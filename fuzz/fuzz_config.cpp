// libFuzzer target: arbitrary bytes as a TOML config, through
// mtrank::parse_config (toml++ and every check of src/config/config.cpp).
// On success the config is written back with to_toml, parsed again, and
// written again: the two texts must be the same (what a model directory
// stores must reproduce the structs exactly).
// Inputs that start with "#extends\n" also go through load_config with
// `extends`: the rest is written as a base file, and a child file that extends
// it and overrides [train] is loaded (file reading, merging, origins).
// Only ConfigError may come out. A crash, a sanitizer report, any other
// exception, or a round trip that changes the text is a finding.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <typeinfo>

#include "common/error.h"
#include "config/config.h"

namespace {

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "FINDING: %s\n", what.c_str());
  std::abort();
}

void round_trip(const mtrank::Config& config) {
  const std::string once = to_toml(config);
  mtrank::Config again;
  try {
    again = mtrank::parse_config(once, "round-trip.toml");
  } catch (const mtrank::ConfigError& e) {
    finding(std::string("to_toml wrote a config that parse_config refuses: ") + e.what() + "\n--- text ---\n" + once);
  }
  const std::string twice = to_toml(again);
  if (once != twice) finding("to_toml -> parse_config -> to_toml changed the text:\n--- first ---\n" + once +
                             "\n--- second ---\n" + twice);
}

bool write_file(const std::string& path, const char* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const bool ok = std::fwrite(data, 1, size, f) == size;
  return std::fclose(f) == 0 && ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const char kExtends[] = "#extends\n";
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    if (text.rfind(kExtends, 0) == 0) {
      static const std::string dir = [] {
        const std::string d = (access("/dev/shm", W_OK) == 0 ? std::string("/dev/shm") : std::string("/tmp")) +
                              "/mtrank-fuzz-config-" + std::to_string(getpid());
        if (mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) finding("cannot create " + d);
        const std::string child = "extends = \"base.toml\"\n[train]\nepochs = 2\n[model]\ntype = \"ple\"\n";
        if (!write_file(d + "/child.toml", child.data(), child.size())) finding("cannot write child.toml");
        return d;
      }();
      const std::string body = text.substr(sizeof kExtends - 1);
      if (!write_file(dir + "/base.toml", body.data(), body.size())) finding("cannot write base.toml");
      round_trip(mtrank::load_config(dir + "/child.toml"));
    } else {
      round_trip(mtrank::parse_config(text, "fuzz.toml"));
    }
  } catch (const mtrank::ConfigError&) {
  } catch (const std::exception& e) {
    finding(std::string("unexpected exception ") + typeid(e).name() + ": " + e.what());
  } catch (...) {
    finding("unexpected exception of a type not derived from std::exception");
  }
  return 0;
}
