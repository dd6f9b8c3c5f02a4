// The loader's reading context: positions, diagnostics and typed reads of
// YAML nodes. Every read reports its own problem (file:line:column, field
// path, what was expected) and returns nullopt, so the caller just moves on
// to the next field and a file's errors all come out in one pass.
//
// Design: yaml-cpp scalars are untyped text, so every typed read first runs
// ${VAR} interpolation on the text and then parses it with clusterd's own
// strict rules; `instances: ${WORKERS:-2}` therefore works for any field.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/interpolate.h"
#include "config/load.h"

namespace clusterd::config {

class Reader {
 public:
  Reader(std::string file, std::string source, EnvLookup lookup);

  const std::string& file() const { return file_; }
  const EnvLookup& lookup() const { return lookup_; }

  void error(const YAML::Mark& at, const std::string& field, std::string message);
  void warning(const YAML::Mark& at, const std::string& field, std::string message);
  std::vector<Diagnostic>& errors() { return errors_; }
  std::vector<Diagnostic>& warnings() { return warnings_; }

  // The node's position; an implicit null (`key:` with nothing after it)
  // has none worth showing, so the key's position stands in for it.
  static YAML::Mark markOf(const YAML::Node& value, const YAML::Node& key);

  // What a node is, for messages: "a mapping", "a list", "nothing (null)", "`text`".
  static std::string describe(const YAML::Node& node);

  // The interpolated text of a scalar. `expected` names what the field
  // wants, for the error when the node is not a scalar.
  std::optional<std::string> text(const YAML::Node& node, const YAML::Mark& at,
                                  const std::string& field, std::string_view expected);
  std::optional<std::string> string(const YAML::Node& node, const YAML::Mark& at,
                                    const std::string& field);
  std::optional<bool> boolean(const YAML::Node& node, const YAML::Mark& at,
                              const std::string& field);
  std::optional<int64_t> integer(const YAML::Node& node, const YAML::Mark& at,
                                 const std::string& field, int64_t min, int64_t max);
  std::optional<Millis> duration(const YAML::Node& node, const YAML::Mark& at,
                                 const std::string& field, Millis min = Millis(0));
  std::optional<uint64_t> memory(const YAML::Node& node, const YAML::Mark& at,
                                 const std::string& field, uint64_t min = 0);
  // A command line: a list of words, or one string split like a shell would.
  std::optional<std::vector<std::string>> words(const YAML::Node& node, const YAML::Mark& at,
                                                const std::string& field);
  // One of `choices`, else an error listing them.
  std::optional<std::string> choice(const YAML::Node& node, const YAML::Mark& at,
                                    const std::string& field,
                                    const std::vector<std::string_view>& choices);

  // A mapping's entries as (key text, key node, value node), in file order,
  // with YAML merge keys (`<<: *defaults`) expanded under the explicit keys
  // and duplicate keys reported. False (error reported) when not a mapping.
  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
    // Where the entry is, for messages: the value, or its key when empty.
    YAML::Mark mark() const { return markOf(value, key_node); }
  };
  bool entries(const YAML::Node& node, const YAML::Mark& at, const std::string& field,
               std::vector<Entry>& out);

  // Reports `key` as unknown, suggesting the nearest of `known`.
  void unknownKey(const Entry& entry, const std::string& field, std::string_view where,
                  const std::vector<std::string_view>& known);

 private:
  void add(std::vector<Diagnostic>& into, const YAML::Mark& at, const std::string& field,
           std::string message);
  // Where in the file the n-th "${" of a scalar starting at `at` is.
  YAML::Mark markOfReference(const YAML::Mark& at, const std::string& raw, size_t offset) const;

  std::string file_;
  std::string source_;
  EnvLookup lookup_;
  std::vector<Diagnostic> errors_;
  std::vector<Diagnostic> warnings_;
};

// A field table: each known key of a section and what reading it does.
template <typename Target>
struct Field {
  std::string_view key;
  std::function<void(Reader&, const Reader::Entry&, const std::string& path, Target&)> read;
};

inline std::string joinPath(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

template <typename Target>
std::vector<std::string_view> keysOf(const std::vector<Field<Target>>& fields) {
  std::vector<std::string_view> keys;
  for (const auto& f : fields) keys.push_back(f.key);
  return keys;
}

// Applies `fields` to every entry; unknown keys are reported with a
// suggestion. `where` names the section for the message ("an app", "queue").
template <typename Target>
void readFields(Reader& r, const std::vector<Reader::Entry>& entries, const std::string& path,
                std::string_view where, const std::vector<Field<Target>>& fields, Target& target) {
  for (const auto& e : entries) {
    bool found = false;
    for (const auto& f : fields) {
      if (f.key == e.key) {
        f.read(r, e, joinPath(path, e.key), target);
        found = true;
        break;
      }
    }
    if (!found) r.unknownKey(e, joinPath(path, e.key), where, keysOf(fields));
  }
}

}  // namespace clusterd::config
