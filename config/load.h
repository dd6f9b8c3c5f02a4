// Loading an ecosystem file: parse YAML or JSON, interpolate ${VAR} and
// ${VAR:-default} from the environment, merge `env_<name>` for `--env`, check
// every field, and resolve units. All problems in a file are reported at once.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/spec.h"

namespace clusterd::config {

// One problem found in an ecosystem file, positioned for an editor:
// "<file>:<line>:<column>: <field>: <message>".
struct Diagnostic {
  std::string file;
  int line = 0;       // 1-based; 0 when unknown
  int column = 0;     // 1-based; 0 when unknown
  std::string field;  // dotted path, e.g. "apps[1].instances"
  std::string message;
  std::string toString() const;
};

// What one ecosystem file may make the loader do (docs/CONFIG.md, "Limits"):
// a file is read whole into memory and walked, and YAML aliases and merge
// keys (`<<`) can make a small file stand for a huge or deep tree.
struct LoadLimits {
  size_t max_file_bytes = 4 << 20;
  // Levels of nesting, counted through aliases (`- *a` inside `&b` is one
  // level deeper than `&a`'s contents).
  int max_depth = 64;
  // Nodes with every alias and merge key expanded where it is used.
  size_t max_nodes = 1'000'000;
};

struct LoadOptions {
  std::string env_name;  // selects `env_<name>`; empty = only `env`
  int cores = 0;         // 0 = this machine's core count
  // Variables for ${VAR}; nullopt = the process environment.
  std::optional<std::map<std::string, std::string>> environment;
  LoadLimits limits;
};

// The variables a file's `${…}` references looked up, with what was found
// (nullopt = unset), whether or not a default was then used.
using Variables = std::map<std::string, std::optional<std::string>>;

struct LoadResult {
  Ecosystem ecosystem;                  // meaningful only when ok()
  // What the file's values were resolved from: a program that re-reads the
  // file elsewhere (the built-in worker, started by the master) can be given
  // exactly these to see what this reading saw.
  Variables variables;
  std::vector<Diagnostic> diagnostics;  // errors, in file order
  std::vector<Diagnostic> warnings;     // accepted but worth saying (ignored PM2 keys, …)
  bool unreadable = false;              // the file could not be read at all (an I/O error)
  bool ok() const { return diagnostics.empty(); }
};

LoadResult loadEcosystem(const std::string& path, const LoadOptions& options = {});
// The same, from text already in memory; `path` names it in messages and
// its directory is the base for relative paths.
LoadResult loadEcosystemText(const std::string& text, const std::string& path,
                             const LoadOptions& options = {});

// Parses "300M", "1G", "512K", "1048576" into bytes; false when malformed.
bool parseMemory(const std::string& text, uint64_t& bytes);
// Parses 1500, "500ms", "2s", "1m", "1h" into milliseconds; false when malformed.
bool parseDuration(const std::string& text, Millis& out);
// Splits a command line like a POSIX shell would, without running one:
// quotes and backslashes, no expansion. False on an unterminated quote.
bool splitArgs(const std::string& text, std::vector<std::string>& out);

}  // namespace clusterd::config
