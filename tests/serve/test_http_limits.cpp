// Pieces of the HTTP server that hostile input reaches (issue 14). The server
// end to end: serve_test.sh and serve_hostile_test.sh.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "serve/server.h"

namespace fs = std::filesystem;
using mtrank::serve::detail::error_body;
using mtrank::serve::detail::prometheus_label;
using mtrank::serve::detail::resolve_inside;
using mtrank::serve::detail::token_matches;

// An error message that quotes a value cut after the first byte of "é" made
// nlohmann::json throw while the 500 handler wrote its body (cpp-httplib then
// sent the exception's text in an EXCEPTION_WHAT header).
TEST(HttpLimits, ErrorBodiesAreValidUtf8Json) {
  const std::string cut = "candidates[0].price: 'aaa\xc3' is not a finite number";
  std::string body;
  ASSERT_NO_THROW(body = error_body(cut));
  const auto j = nlohmann::json::parse(body);  // throws on invalid UTF-8
  EXPECT_EQ(j.at("error").get<std::string>(), "candidates[0].price: 'aaa\xef\xbf\xbd' is not a finite number");
  EXPECT_EQ(error_body("plain"), R"({"error":"plain"})");
}

TEST(HttpLimits, PrometheusLabelsAreEscaped) {
  EXPECT_EQ(prometheus_label("model"), "model");
  EXPECT_EQ(prometheus_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  // A directory named to inject a second label set stays one value.
  EXPECT_EQ(prometheus_label("x\",version=\"evil"), "x\\\",version=\\\"evil");
}

TEST(HttpLimits, TokenComparison) {
  EXPECT_TRUE(token_matches("Bearer s3cret", "s3cret"));
  EXPECT_FALSE(token_matches("Bearer s3cre", "s3cret"));
  EXPECT_FALSE(token_matches("Bearer s3cretX", "s3cret"));
  EXPECT_FALSE(token_matches("Bearer s3cres", "s3cret"));
  EXPECT_FALSE(token_matches("", "s3cret"));
  EXPECT_FALSE(token_matches("Bearer s3cret\r", "s3cret"));
}

TEST(HttpLimits, ReloadsStayInsideTheModelsRoot) {
  const fs::path base = fs::weakly_canonical(fs::temp_directory_path() / ("mtrank_root_" + std::to_string(getpid())));
  fs::remove_all(base);
  fs::create_directories(base / "root" / "m1");
  fs::create_directories(base / "outside");
  fs::create_symlink(base / "outside", base / "root" / "link_out");
  fs::create_symlink(base / "root" / "m1", base / "root" / "link_in");
  const fs::path root = base / "root";
  EXPECT_EQ(resolve_inside(root, "m1").value(), (root / "m1").string());
  EXPECT_EQ(resolve_inside(root, (root / "m1").string()).value(), (root / "m1").string());
  EXPECT_EQ(resolve_inside(root, "link_in").value(), (root / "m1").string());
  EXPECT_EQ(resolve_inside(root, "not_yet").value(), (root / "not_yet").string());  // load fails later, 422
  EXPECT_FALSE(resolve_inside(root, "../outside"));
  EXPECT_FALSE(resolve_inside(root, "m1/../../outside"));
  EXPECT_FALSE(resolve_inside(root, "missing/../../outside"));
  EXPECT_FALSE(resolve_inside(root, "link_out"));
  EXPECT_FALSE(resolve_inside(root, "link_out/x"));
  EXPECT_FALSE(resolve_inside(root, (base / "outside").string()));
  EXPECT_FALSE(resolve_inside(root, "/etc"));
  EXPECT_FALSE(resolve_inside(root, (base / "rootx").string()));  // a prefix of the name is not inside
  fs::remove_all(base);
}
