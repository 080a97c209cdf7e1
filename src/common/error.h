#pragma once
// Errors that reach the user. Every message names where the problem is
// (file:line:column, or a config key) and, where possible, how to fix it.
#include <stdexcept>
#include <string>

namespace mtrank {

// Bad input data: a file that does not parse, a value that is out of range.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A config that is malformed, has an unknown key or a wrong type.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A model directory that is missing files or is corrupt.
class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Training that cannot go on: a loss or a prediction that is not a finite number.
class TrainingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace mtrank
